//! A stand-in for the Datacoves verify service: `GET /api/iam/verify` with
//! `Authorization: Token <t>` answers the token's identity, or 404.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{EndpointExt, IntoResponse, Request, Response, Route, handler};

pub struct VerifyServer {
    address: std::net::SocketAddr,
    calls: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct State {
    identities: Arc<HashMap<String, serde_json::Value>>,
    calls: Arc<AtomicUsize>,
}

#[handler]
fn verify(request: &Request, state: Data<&State>) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Token "))
        .unwrap_or_default();
    match state.identities.get(token) {
        Some(identity) => Json(identity.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl VerifyServer {
    pub async fn start(identities: HashMap<String, serde_json::Value>) -> VerifyServer {
        let calls = Arc::new(AtomicUsize::new(0));
        let state = State { identities: Arc::new(identities), calls: calls.clone() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Route::new().at("/api/iam/verify", poem::get(verify)).data(state);
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stopped.await;
                    },
                    Some(std::time::Duration::from_secs(1)),
                )
                .await;
        });
        VerifyServer { address, calls, shutdown: Some(shutdown), task: Some(task) }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/iam/verify", self.address)
    }

    /// How many verifications were asked for.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Stops answering: the port is closed afterwards.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    pub async fn halt(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
