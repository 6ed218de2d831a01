//! Timeouts and recovery (contract §9): databases that go down or hang, an Airflow table
//! held locked, clients that idle or never finish their headers, and idle Airflow pools.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pg_proxy::{Mode, PgProxy};
use support::seed::ACME;
use support::{Scenario, TestJade, connect, message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UNAVAILABLE: &str = "Service temporarily unavailable. Please retry.";

/// The environments whose runs a run list holds.
fn environments(runs: &Value) -> BTreeSet<i64> {
    runs["data"].as_array().unwrap().iter().map(|run| run["environment_id"].as_i64().unwrap()).collect()
}

/// `GET path` answers 503 with the contract's message within `bound`.
async fn unavailable_within(jade: &TestJade, path: &str, bound: Duration) {
    let started = Instant::now();
    let response = jade.get(ACME, path).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 503, "GET {path}: {body}");
    assert_eq!(message(&body), UNAVAILABLE, "GET {path}");
    assert!(elapsed < bound, "GET {path} took {elapsed:?}");
}

/// `GET path` answers 200 again within a few seconds, without a restart.
async fn back(jade: &TestJade, path: &str) {
    let started = Instant::now();
    loop {
        let response = jade.get(ACME, path).await;
        if response.status() == 200 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "GET {path} still answers {}", response.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_jade_and_datacoves_databases_failing_or_hanging_answer_503_and_service_comes_back() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let jade_db = PgProxy::start().await;
        let datacoves_db = PgProxy::start().await;
        let jade = TestJade::start_with(Scenario::default(), |seeded| {
            vec![
                ("DB_URL".into(), jade_db.url(&seeded.jade_db)),
                ("DATACOVES_DB_URL".into(), datacoves_db.url(&seeded.datacoves_db)),
                ("DB_STATEMENT_TIMEOUT_MS".into(), "500".into()),
            ]
        })
        .await;
        // Projects read the Datacoves database only; runs then read the Jade database's index.
        let projects = "/api/v2/accounts/1/projects";
        let runs = "/api/v2/accounts/1/runs";
        jade.json(ACME, projects, 200).await;
        jade.json(ACME, runs, 200).await;
        // The statement bound (0.5 s), Jade's margin over it, and slack for a busy machine.
        let bound = Duration::from_secs(3);
        for mode in [Mode::Cut, Mode::Stall] {
            datacoves_db.set(mode);
            unavailable_within(&jade, projects, bound).await;
            unavailable_within(&jade, runs, bound).await;
            datacoves_db.set(Mode::Pass);
            back(&jade, projects).await;

            jade_db.set(mode);
            unavailable_within(&jade, runs, bound).await;
            // The Datacoves database alone still answers.
            jade.json(ACME, projects, 200).await;
            jade_db.set(Mode::Pass);
            back(&jade, runs).await;
            let listed = jade.json(ACME, runs, 200).await;
            assert_eq!(environments(&listed), BTreeSet::from([100, 101, 102]), "{mode:?}");
        }
        jade.stop().await;
    })
    .await
    .expect("the test took longer than 90 s");
}

#[tokio::test]
async fn an_airflow_table_held_locked_leaves_only_its_environment_out_within_the_bound() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let jade = TestJade::start(Scenario::default(), &[("AIRFLOW_STATEMENT_TIMEOUT_MS", "500")]).await;
        let runs = "/api/v2/accounts/1/runs";
        assert_eq!(environments(&jade.json(ACME, runs, 200).await), BTreeSet::from([100, 101, 102]));

        let locker = jade.seeded.airflow("dev123").await;
        locker.batch_execute("BEGIN; LOCK TABLE dag_run IN ACCESS EXCLUSIVE MODE").await.unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let listed = jade.json(ACME, runs, 200).await;
            assert!(started.elapsed() < Duration::from_secs(3), "the list took {:?}", started.elapsed());
            assert_eq!(environments(&listed), BTreeSet::from([101, 102]), "{listed}");
        }
        locker.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(environments(&jade.json(ACME, runs, 200).await), BTreeSet::from([100, 101, 102]));
        jade.stop().await;
    })
    .await
    .expect("the test took longer than 60 s");
}

/// Whether the server closed the connection within `wait` (end of stream or reset).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An answer (e.g. the 408 hyper may send): keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_and_take_nothing_from_others() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let jade = TestJade::start(
            Scenario::default(),
            &[("HEADER_READ_TIMEOUT_SECONDS", "1"), ("IDLE_TIMEOUT_SECONDS", "4")],
        )
        .await;
        let address = jade.server.address;
        let opened = Instant::now();
        let mut idle = Vec::new();
        for _ in 0..500 {
            idle.push(TcpStream::connect(address).await.unwrap());
        }
        let mut half_sent = Vec::new();
        for _ in 0..100 {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(b"GET /api/v2/healthcheck HTTP/1.1\r\nHost: jade\r\nX-Slow: ").await.unwrap();
            half_sent.push(stream);
        }
        let sent = Instant::now();

        // A normal request answers at once.
        let started = Instant::now();
        jade.json(ACME, "/api/v2/accounts/1/projects", 200).await;
        assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());

        // A keep-alive connection that finished a request and idles past the header bound
        // stays usable.
        let mut keep_alive = TcpStream::connect(address).await.unwrap();
        let request = b"GET /api/v2/healthcheck HTTP/1.1\r\nHost: jade\r\n\r\n";
        let mut buffer = [0u8; 1024];
        keep_alive.write_all(request).await.unwrap();
        assert!(keep_alive.read(&mut buffer).await.unwrap() > 0);
        let first_answer = Instant::now();

        // The half-sent requests are cut after the header bound (1 s), not before.
        for stream in &mut half_sent {
            assert!(closed_within(stream, Duration::from_secs(3)).await, "a half-sent request is still open");
        }
        let cut = sent.elapsed();
        assert!(cut >= Duration::from_millis(900) && cut < Duration::from_secs(3), "half-sent cut after {cut:?}");

        tokio::time::sleep(Duration::from_millis(1500).saturating_sub(first_answer.elapsed())).await;
        keep_alive.write_all(request).await.unwrap();
        let answered = keep_alive.read(&mut buffer).await.unwrap();
        assert!(buffer[..answered].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..answered]));

        // The idle connections outlive the header bound, and are closed after the idle one (4 s).
        assert!(opened.elapsed() < Duration::from_millis(3500), "the test is too slow to tell: {:?}", opened.elapsed());
        for stream in &mut idle {
            assert!(!closed_within(stream, Duration::ZERO).await, "an idle connection closed before its time");
        }
        for stream in &mut idle {
            assert!(closed_within(stream, Duration::from_secs(6)).await, "an idle connection is still open");
        }
        let closed = opened.elapsed();
        assert!(
            closed >= Duration::from_millis(3900) && closed < Duration::from_secs(8),
            "idle closed after {closed:?}"
        );
        assert!(
            closed_within(&mut keep_alive, Duration::from_secs(5)).await,
            "the keep-alive connection is still open"
        );
        jade.stop().await;
    })
    .await
    .expect("the test took longer than 60 s");
}

#[tokio::test]
async fn an_idle_airflow_pool_is_closed() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let jade = TestJade::start(Scenario::default(), &[("AIRFLOW_POOL_IDLE_SECONDS", "1")]).await;
        let admin = connect("postgres").await;
        let database = jade.seeded.external_airflow_db.clone();
        let connections = || async {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'jade'",
                    &[&database],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0)
        };
        jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=101", 200).await;
        assert!(connections().await > 0, "prod123's pool holds no connection");
        let started = Instant::now();
        while connections().await > 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "prod123's idle pool is still open");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Used again, the environment opens a new pool.
        let runs = jade.json(ACME, "/api/v2/accounts/1/runs?environment_id=101", 200).await;
        assert_eq!(environments(&runs), BTreeSet::from([101]));
        jade.stop().await;
    })
    .await
    .expect("the test took longer than 60 s");
}
