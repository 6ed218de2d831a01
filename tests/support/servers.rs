//! Object-storage servers for the tests, started on free loopback ports and killed when
//! dropped: `moto_server` (the S3 API, for the minio and s3 adapters) and Azurite (Azure
//! Blob). Install them with `scripts/install-storage-servers.sh` (into `.tools/`, where the
//! tests find them), or point `JADE_MOTO_SERVER` / `JADE_AZURITE_BLOB` at the binaries;
//! otherwise `moto_server` / `azurite-blob` are looked up on the PATH. A missing binary
//! fails the test with a line naming it; it is never skipped.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
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

/// A loopback port free now and never handed out before in this process (the kernel may
/// offer a port again once its probe socket is closed).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("no free loopback port")
            .port();
        if HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
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

/// Spawns `program args(port)…` on a free port, then waits until it listens there itself
/// and answers HTTP. A port can still be taken between the probe and the server's bind (by
/// another process, or by a listener of this one binding port 0): the server then exits,
/// and is started again on another port, up to three times. A probe answered by whoever
/// took the port does not count (CI once saw Azurite's test answered by a moto given the
/// same port).
fn spawn_on_free_port(name: &'static str, var: &str, program: &str, args: impl Fn(u16) -> Vec<String>) -> Server {
    for attempt in 1..=3 {
        let port = free_port();
        match spawn_server(name, var, program, &args(port), port) {
            Ok(server) => return server,
            Err(log) if attempt < 3 => {
                eprintln!("{name} exited before answering on port {port}; trying another:\n{log}")
            }
            Err(log) => panic!("{name} (`{program}`) exited before answering, {attempt} times:\n{log}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Spawns `program args…`, then waits until it listens on `port` and answers HTTP there;
/// `Err` with the log's tail when it exits first.
fn spawn_server(name: &'static str, var: &str, program: &str, args: &[String], port: u16) -> Result<Server, String> {
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
    let pid = child.id();
    let mut server = Server { name, child: Some(child), port, log, _dir: dir };
    let started = Instant::now();
    loop {
        if listens(pid, port) && answers_http(port) {
            eprintln!("{name} ready on port {port} after {} ms", started.elapsed().as_millis());
            return Ok(server);
        }
        if server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()).is_some() {
            return Err(server.log_tail());
        }
        if started.elapsed() > Duration::from_secs(60) {
            panic!("{name} (`{program}`) did not answer on port {port} within 60 s:\n{}", server.log_tail());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux's procfs:
/// the socket's inode in `/proc/net/tcp`, among the process's descriptors).
fn listens(pid: u32, port: u16) -> bool {
    let address = format!("0100007F:{port:04X}");
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let Some(inode) = tcp.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, state (0A: LISTEN), inode
        (fields.get(1) == Some(&address.as_str()) && fields.get(3) == Some(&"0A")).then(|| fields.get(9).copied())?
    }) else {
        return false;
    };
    let socket = PathBuf::from(format!("socket:[{inode}]"));
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    descriptors.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == socket))
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
    spawn_on_free_port("moto_server", "JADE_MOTO_SERVER", &program, |port| {
        ["-H", "127.0.0.1", "-p", &port.to_string()].map(String::from).to_vec()
    })
}

pub fn start_azurite() -> Server {
    let program = binary("JADE_AZURITE_BLOB", "node/node_modules/.bin/azurite-blob", "azurite-blob");
    spawn_on_free_port("azurite-blob", "JADE_AZURITE_BLOB", &program, |port| {
        [
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
        .map(String::from)
        .to_vec()
    })
}

/// Azurite's connection string, with its endpoint as a custom cloud location.
pub fn azurite_connection_string(server: &Server) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
         BlobEndpoint={}/{AZURITE_ACCOUNT};",
        server.url()
    )
}
