//! Object-storage servers for the tests, started on free loopback ports and killed when
//! dropped: `moto_server` (the S3 API, for the minio and s3 adapters) and Azurite (Azure
//! Blob). Install them with `scripts/install-storage-servers.sh` (into `.tools/`, where the
//! tests find them), or point `JADE_MOTO_SERVER` / `JADE_AZURITE_BLOB` at the binaries;
//! otherwise `moto_server` / `azurite-blob` are looked up on the PATH. A missing binary
//! fails the test with a line naming it; it is never skipped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "run `scripts/install-storage-servers.sh` and `source .tools/env`";
/// Azurite's account and well-known development key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A server process, killed when dropped.
pub struct Server {
    name: &'static str,
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log[log.floor_char_boundary(start)..].to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("no free loopback port").port()
}

/// The server binary: `$var`, else what the install script put under `.tools/`, else
/// `default` on the PATH.
fn binary(var: &str, installed: &str, default: &str) -> String {
    if let Some(path) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
        return path;
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools").join(installed);
    if installed.exists() {
        return installed.display().to_string();
    }
    default.to_string()
}

/// Spawns `program args…`, then waits until it answers HTTP on `port`.
fn spawn_server(name: &'static str, var: &str, program: &str, args: &[String], port: u16) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log).expect("server log file");
    let child = Command::new(program)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{name} binary `{program}` not found ({var}={program}): {INSTALL_HINT}; \
             it installs {name} under .tools/ and writes the {var} export to .tools/env"
        ),
        Err(e) => panic!("cannot start {name} (`{program}`, from {var}): {e}; {INSTALL_HINT}"),
    };
    let mut server = Server { name, child: Some(child), port, log, _dir: dir };
    let started = Instant::now();
    loop {
        if answers_http(port) {
            eprintln!("{name} ready on port {port} after {} ms", started.elapsed().as_millis());
            return server;
        }
        if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            panic!("{name} (`{program}`) exited with {status} before answering:\n{}", server.log_tail());
        }
        if started.elapsed() > Duration::from_secs(60) {
            panic!("{name} (`{program}`) did not answer on port {port} within 60 s:\n{}", server.log_tail());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

pub fn start_moto() -> Server {
    let program = binary("JADE_MOTO_SERVER", "venv/bin/moto_server", "moto_server");
    let port = free_port();
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()].map(String::from);
    spawn_server("moto_server", "JADE_MOTO_SERVER", &program, &args, port)
}

pub fn start_azurite() -> Server {
    let program = binary("JADE_AZURITE_BLOB", "node/node_modules/.bin/azurite-blob", "azurite-blob");
    let port = free_port();
    let args = [
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--silent",
    ]
    .map(String::from);
    spawn_server("azurite-blob", "JADE_AZURITE_BLOB", &program, &args, port)
}

/// Azurite's connection string, with its endpoint as a custom cloud location.
pub fn azurite_connection_string(server: &Server) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
         BlobEndpoint={}/{AZURITE_ACCOUNT};",
        server.url()
    )
}
