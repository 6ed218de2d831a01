//! A TCP proxy in front of a storage server, so a test can make the server go away (and
//! come back) at an exact moment while the server keeps its objects for the test to list:
//! `cut` closes every connection and refuses new ones as a stopped server would; `hold_new`
//! stalls the connections opened from then on; `rate` slows what Jade sends; `cut_after`
//! cuts once Jade has sent so many bytes (mid-body).

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    /// Bytes sent upstream (Jade to the server) since the start.
    upstream: AtomicU64,
    /// Cut once `upstream` reaches this (0: never).
    cut_at: AtomicU64,
    /// Upstream bytes per second (0: unlimited).
    rate: AtomicU64,
    /// Connections accepted from now on wait for `release`.
    hold_new: AtomicBool,
    open: AtomicUsize,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
    /// `true` while cut; `generation` wakes held connections.
    cut: watch::Sender<bool>,
    release: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards `127.0.0.1:<port>` to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let (cut, _) = watch::channel(false);
        let (release, _) = watch::channel(0u64);
        let task = {
            let (state, cut, release) = (state.clone(), cut.clone(), release.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else { continue };
                    if *cut.borrow() {
                        drop(client);
                        continue;
                    }
                    let held = state.hold_new.load(Ordering::SeqCst).then(|| *release.borrow());
                    let connection = Connection {
                        state: state.clone(),
                        cut: cut.subscribe(),
                        release: release.subscribe(),
                        held,
                        upstream: upstream.clone(),
                        cutter: cut.clone(),
                    };
                    tokio::spawn(connection.run(client));
                }
            })
        };
        Proxy { port, state, cut, release, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes every connection and refuses new ones: the server is gone.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Cuts once Jade has sent `more` bytes beyond what it has sent so far.
    pub fn cut_after(&self, more: u64) {
        self.state.cut_at.store(self.upstream_bytes() + more.max(1), Ordering::SeqCst);
    }

    /// Forwards again (after `cut`), at full speed, holding nothing.
    pub fn restore(&self) {
        self.state.cut_at.store(0, Ordering::SeqCst);
        self.state.rate.store(0, Ordering::SeqCst);
        self.cut.send_replace(false);
        self.release();
    }

    /// Connections opened from now on send nothing until `release`.
    pub fn hold_new(&self) {
        self.state.hold_new.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.state.hold_new.store(false, Ordering::SeqCst);
        self.release.send_modify(|generation| *generation += 1);
    }

    /// Limits what Jade sends to `bytes_per_second` (0: no limit).
    pub fn rate(&self, bytes_per_second: u64) {
        self.state.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    pub fn upstream_bytes(&self) -> u64 {
        self.state.upstream.load(Ordering::SeqCst)
    }

    /// Connections open through the proxy now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_replace(true);
    }
}

struct Connection {
    state: Arc<State>,
    cut: watch::Receiver<bool>,
    release: watch::Receiver<u64>,
    /// The release generation it waits to pass, when held.
    held: Option<u64>,
    upstream: String,
    cutter: watch::Sender<bool>,
}

impl Connection {
    async fn run(self, client: TcpStream) {
        self.state.open.fetch_add(1, Ordering::SeqCst);
        if let Some(generation) = self.held {
            let mut release = self.release.clone();
            let mut cut = self.cut.clone();
            tokio::select! {
                _ = release.wait_for(|g| *g > generation) => {}
                _ = cut.wait_for(|cut| *cut) => {}
            }
        }
        if !*self.cut.borrow()
            && let Ok(server) = TcpStream::connect(&self.upstream).await
        {
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let state = self.state.clone();
            let cutter = self.cutter.clone();
            let up = async move {
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    let read = match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    let sent = state.upstream.fetch_add(read as u64, Ordering::SeqCst) + read as u64;
                    let cut_at = state.cut_at.load(Ordering::SeqCst);
                    if cut_at > 0 && sent >= cut_at {
                        cutter.send_replace(true);
                        break;
                    }
                    let rate = state.rate.load(Ordering::SeqCst);
                    if rate > 0 {
                        tokio::time::sleep(Duration::from_secs_f64(read as f64 / rate as f64)).await;
                    }
                    if server_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
                let _ = server_write.shutdown().await;
            };
            let down = async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                let _ = client_write.shutdown().await;
            };
            let mut cut = self.cut.clone();
            tokio::select! {
                _ = async { tokio::join!(up, down) } => {}
                _ = cut.wait_for(|cut| *cut) => {}
            }
        }
        self.state.open.fetch_sub(1, Ordering::SeqCst);
    }
}
