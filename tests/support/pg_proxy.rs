//! A TCP proxy in front of the tests' PostgreSQL server, so a test can make a database go
//! away at an exact moment and bring it back: `Cut` closes every connection and refuses new
//! ones (a database that is down), `Stall` accepts connections and forwards nothing either
//! way (a network or server that hangs without refusing), `Pass` forwards again.

#![allow(dead_code)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::seed::Seeded;
use super::storage::Storage;
use super::verify::VerifyServer;
use super::{TestJade, pg_base, seed};
use jade::config::Config;
use jade::startup;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Stall,
    Cut,
}

pub struct PgProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

/// `host:port` of the tests' PostgreSQL server.
fn upstream() -> String {
    let base = pg_base();
    let authority = base.rsplit('@').next().unwrap_or(&base);
    authority.trim_start_matches("postgres://").trim_end_matches('/').to_owned()
}

impl PgProxy {
    pub async fn start() -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Pass);
        let task = {
            let mode = mode.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else { continue };
                    if *mode.borrow() == Mode::Cut {
                        drop(client);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(upstream()).await else { continue };
                    tokio::spawn(forward(client, server, mode.subscribe()));
                }
            })
        };
        PgProxy { port, mode, task }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The URL of `database` through the proxy.
    pub fn url(&self, database: &str) -> String {
        let base = pg_base();
        let user = base.trim_start_matches("postgres://").split('@').next().unwrap_or("postgres").to_owned();
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.set(Mode::Cut);
        self.task.abort();
    }
}

async fn forward(client: TcpStream, server: TcpStream, mode: watch::Receiver<Mode>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pipe(client_read, server_write, mode.clone()) => {}
        () = pipe(server_read, client_write, mode) => {}
    }
}

/// Copies while the mode is `Pass`, waits while `Stall`, ends (closing both ends) on `Cut`
/// or when either end closes.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Cut => return,
            Mode::Stall => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Mode::Pass => tokio::select! {
                read = from.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => if to.write_all(&buffer[..n]).await.is_err() { return },
                },
                changed = mode.changed() => if changed.is_err() { return },
            },
        }
    }
}

impl TestJade {
    /// Seeds a scenario and starts Jade on it with `overrides` computed from the seeded
    /// databases (e.g. a database's URL through a [`PgProxy`]).
    pub async fn start_with(
        scenario: seed::Scenario,
        overrides: impl FnOnce(&Seeded) -> Vec<(String, String)>,
    ) -> TestJade {
        let seeded = seed::seed(scenario).await;
        let verify = VerifyServer::start(seeded.identities.clone()).await;
        let storage = Storage::start(super::Backend::Fs).await;
        let mut vars = super::variables(&seeded, &verify, &storage, &[]);
        vars.extend(overrides(&seeded));
        let config = Config::from_lookup(move |name| vars.get(name).cloned()).expect("test configuration is valid");
        let jade = startup::build(&config).await.unwrap_or_else(|e| panic!("Jade did not start: {e}"));
        let server = startup::spawn(jade, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        TestJade { server, seeded, verify, client: reqwest::Client::new(), storage, config }
    }
}
