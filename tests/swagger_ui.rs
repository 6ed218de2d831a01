//! Swagger UI as a person uses it: `jade demo` started as the README says, its Swagger UI
//! walked in headless Chromium (Debian's chromium and chromium-driver, selenium from the tools
//! venv; scripts/test.sh installs them) by tests/swagger_ui/walk.py. Saves a screenshot of
//! the last answer to `target/tmp/swagger-ui.png`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const WALK_TIMEOUT: Duration = Duration::from_secs(180);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Kills the demo when the test ends, however it ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `jade demo` on a free port; answers it with its URL and the first printed token.
fn start_demo() -> (Demo, String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jade"))
        .args(["demo", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jade demo starts");
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);
    let (lines, printed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut token = None;
    loop {
        let line = printed.recv_timeout(START_TIMEOUT).expect("jade demo printed its tokens within 30 s");
        // "  account 1 (Acme Analytics): token <token>"
        if token.is_none() && line.trim_start().starts_with("account ") {
            token = line.rsplit(' ').next().map(str::to_owned);
        }
        if line.contains("paste a token above alone") {
            break;
        }
    }
    (demo, format!("http://127.0.0.1:{port}"), token.expect("the demo printed a token"))
}

#[test]
fn a_person_authorizes_in_swagger_ui_and_tries_runs_manifests_and_files() {
    for (binary, package) in [("/usr/bin/chromium", "chromium"), ("/usr/bin/chromedriver", "chromium-driver")] {
        assert!(Path::new(binary).exists(), "{binary} is missing: install Debian's {package} (scripts/test.sh does)");
    }
    let python: PathBuf = root().join(".tools/venv/bin/python");
    let (_demo, url, token) = start_demo();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swagger-ui.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut walk = Command::new(&python)
        .arg(root().join("tests/swagger_ui/walk.py"))
        .args([&url, &token])
        .arg(&screenshot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); run scripts/install-client-tools.sh", python.display()));
    let started = std::time::Instant::now();
    while walk.try_wait().unwrap().is_none() {
        if started.elapsed() > WALK_TIMEOUT {
            let _ = walk.kill();
            panic!("the Swagger UI walk did not end within {WALK_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = walk.wait_with_output().unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the Swagger UI walk failed:\n{printed}");
    // Four tries, each answered 200: three as printed, the runs list again with `Token <token>`.
    assert_eq!(printed.lines().filter(|line| line.ends_with(": 200")).count(), 4, "{printed}");
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        screenshot.display()
    );
}
