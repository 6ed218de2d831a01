//! `AUTH_VERIFIER=database` over django-rest-knox 5 tokens (contract §2, appendix A §0):
//! rows of `iam_datacovestoken` seeded the way knox writes them, verified over real HTTP and
//! real PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use jade::ports::auth::{TokenVerifier, VerifyError};
use serde_json::{Value, json};
use support::seed::{
    DB_ACME, DB_DEACTIVATED, DB_EXPIRED, DB_MKT_ENV, DB_PLAIN, DB_TWIN_ADA, DB_TWIN_PLAIN, DB_UNICODE, KnoxScope,
    insert_knox_token,
};
use support::{Scenario, TestJade, connect, message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INVALID: &str = "Invalid API Key. Please use a valid Bearer Token.";

/// A token as knox makes them: 64 random hex characters.
fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

fn ids(list: &Value) -> Vec<i64> {
    list["data"].as_array().unwrap().iter().map(|item| item["id"].as_i64().unwrap()).collect()
}

/// Starts Jade with the database verifier and no cache, so every request asks the tables.
async fn uncached() -> TestJade {
    TestJade::start(Scenario::default(), &[("AUTH_VERIFIER", "database"), ("AUTH_CACHE_TTL_SECONDS", "0")]).await
}

async fn refused(jade: &TestJade, token: &str) {
    let body = jade.json(token, "/api/v2/accounts/1", 401).await;
    assert_eq!(message(&body), INVALID, "token {token:?}");
}

#[tokio::test]
async fn project_and_environment_tokens_are_verified_as_the_verify_view_does() {
    let jade = uncached().await;
    // Ada's project token: Ada's grants (account acme, project analytics, environment mkt123).
    assert_eq!(ids(&jade.json(DB_ACME, "/api/v2/accounts/", 200).await), vec![1]);
    assert_eq!(ids(&jade.json(DB_ACME, "/api/v2/accounts/1/projects", 200).await), vec![10, 11]);
    jade.json(DB_ACME, "/api/v2/datacoves/projects/analytics/latest-manifest", 404).await;
    // The mkt123 service user's environment token reaches mkt123 and nothing else.
    assert_eq!(ids(&jade.json(DB_MKT_ENV, "/api/v2/accounts/", 200).await), vec![1]);
    jade.json(DB_MKT_ENV, "/api/v2/datacoves/manifests?environment_slug=mkt123", 404).await;
    let other_environment = jade.json(DB_MKT_ENV, "/api/v2/datacoves/manifests?environment_slug=dev123", 401).await;
    assert_eq!(message(&other_environment), "Invalid Environment in Path. You have no accces to this environment.");
    let other_project = jade.json(DB_MKT_ENV, "/api/v2/datacoves/projects/analytics/latest-manifest", 401).await;
    assert_eq!(message(&other_project), "Invalid Project in Path. You have no accces to this project.");
    // `Bearer` works as well as `Token`.
    let bearer = jade
        .client
        .get(jade.url("/api/v2/accounts/1"))
        .header("Authorization", format!("Bearer {DB_MKT_ENV}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    jade.stop().await;
}

#[tokio::test]
async fn expired_unknown_and_deactivated_users_tokens_are_refused() {
    let jade = uncached().await;
    refused(&jade, DB_EXPIRED).await;
    refused(&jade, DB_DEACTIVATED).await;
    refused(&jade, &random_token()).await;
    // A token whose key is known but whose digest matches no row.
    let mut digest_only = DB_ACME.to_owned();
    digest_only.replace_range(63.., "f");
    refused(&jade, &digest_only).await;
    // The same user's unexpired token works.
    assert_eq!(ids(&jade.json(DB_ACME, "/api/v2/accounts/", 200).await), vec![1]);
    jade.stop().await;
}

#[tokio::test]
async fn tokens_sharing_a_key_are_each_their_own_users() {
    let jade = uncached().await;
    assert_eq!(DB_TWIN_ADA[..15], DB_TWIN_PLAIN[..15]);
    // Ada's twin (it expires tomorrow) reaches Ada's account, Plain's reaches nothing.
    assert_eq!(ids(&jade.json(DB_TWIN_ADA, "/api/v2/accounts/", 200).await), vec![1]);
    jade.json(DB_TWIN_ADA, "/api/v2/accounts/1", 200).await;
    assert_eq!(jade.json(DB_TWIN_PLAIN, "/api/v2/accounts/", 200).await["data"], json!([]));
    jade.json(DB_TWIN_PLAIN, "/api/v2/accounts/1", 401).await;
    // A third token with the same key and another rest is nobody's.
    let third = format!("{}{}", &DB_TWIN_ADA[..15], "f".repeat(49));
    refused(&jade, &third).await;
    // Neither are the twins cut short or lengthened.
    refused(&jade, &DB_TWIN_ADA[..63]).await;
    refused(&jade, &format!("{DB_TWIN_ADA}0")).await;
    refused(&jade, &DB_TWIN_ADA[..15]).await;
    assert_eq!(DB_PLAIN.len(), 64);
    jade.stop().await;
}

/// Sends `GET /api/v2/accounts/1` with the raw `Authorization` value (bytes reqwest would
/// refuse to send) and answers the status code.
async fn raw_status(address: std::net::SocketAddr, authorization: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request =
        b"GET /api/v2/accounts/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: ".to_vec();
    request.extend_from_slice(authorization);
    request.extend_from_slice(b"\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).unwrap_or_else(|| panic!("no status line in {answer:?}"));
    status.parse().unwrap()
}

#[tokio::test]
async fn odd_tokens_are_refused_never_failed() {
    let jade = uncached().await;
    // Non-ASCII characters reach the verifier: a knox row's key is 15 characters, not
    // bytes, so Ada's non-ASCII token works and an unknown one is refused.
    assert_eq!(ids(&jade.json(DB_UNICODE, "/api/v2/accounts/", 200).await), vec![1]);
    refused(&jade, "jädé-tökén-ñü-€-other").await;
    refused(&jade, "ключ-доступа-не-существует-🔑🔑🔑").await;
    refused(&jade, "é").await;
    // Very long tokens, one sharing a real token's key.
    refused(&jade, &"a".repeat(10_000)).await;
    refused(&jade, &format!("{DB_ACME}{}", "0".repeat(10_000))).await;
    // A header that is not UTF-8 is malformed.
    let latin1 = jade
        .client
        .get(jade.url("/api/v2/accounts/1"))
        .header("Authorization", reqwest::header::HeaderValue::from_bytes(b"Token caf\xe9").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(latin1.status(), 401);
    assert_eq!(message(&latin1.json::<Value>().await.unwrap()), "Missing API Key. Please create a Bearer Token first.");
    // NUL and other control characters: the HTTP server refuses the header itself; never 5xx.
    for raw in [&b"Token abc\0def"[..], b"Token \0", b"Token abc\x01def", b"Token abc\x7fdef", b"Token a\x1bb"] {
        let status = raw_status(jade.server.address, raw).await;
        assert!((400..500).contains(&status), "{raw:?}: {status}");
    }
    // A tab inside the token (knox splits on whitespace): refused.
    let tab = raw_status(jade.server.address, format!("Token {}\t{}", &DB_ACME[..32], &DB_ACME[32..]).as_bytes()).await;
    assert_eq!(tab, 401);
    assert_eq!(raw_status(jade.server.address, format!("Token {DB_ACME}").as_bytes()).await, 200);
    jade.stop().await;
}

#[tokio::test]
async fn the_verifier_itself_refuses_what_postgresql_could_not_take() {
    let jade = uncached().await;
    let pool = jade::adapters::pg::Database::new(
        support::url(&jade.seeded.datacoves_db).parse().unwrap(),
        1,
        jade::adapters::pg::Tls::None,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let verifier = jade::adapters::auth::DatabaseVerifier::new(pool);
    let long = "x".repeat(1 << 20);
    let nul_after_key = format!("{}\0", &DB_ACME[..20]);
    for token in
        ["", "\0", "abc\0def", nul_after_key.as_str(), "a\u{1}b", "a\u{7f}b", "a\u{85}b", "a b", "\u{feff}", &long]
    {
        assert_eq!(verifier.verify(token).await, Err(VerifyError::Invalid), "{:?}", &token[..token.len().min(40)]);
    }
    let ada = verifier.verify(DB_ACME).await.unwrap();
    assert_eq!((ada.email.as_deref(), ada.account_ids), (Some("ada@acme.example"), vec![1]));
    assert_eq!(verifier.verify(DB_UNICODE).await.unwrap().email.as_deref(), Some("ada@acme.example"));
    assert_eq!(verifier.verify(DB_TWIN_PLAIN).await.unwrap().email.as_deref(), Some("plain@acme.example"));
    jade.stop().await;
}

#[tokio::test]
async fn refusals_are_remembered_for_a_few_seconds_and_outages_not_at_all() {
    let jade = TestJade::start(Scenario::default(), &[("AUTH_VERIFIER", "database")]).await;
    let datacoves = connect(&jade.seeded.datacoves_db).await;

    // A refused token that gets issued: still refused at once, accepted within seconds.
    let late = random_token();
    refused(&jade, &late).await;
    insert_knox_token(&datacoves, &late, 1, KnoxScope::Project(10), None).await;
    let issued = Instant::now();
    refused(&jade, &late).await;
    let started = Instant::now();
    loop {
        let response = jade.get(&late, "/api/v2/accounts/1").await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 401);
        assert!(started.elapsed() < Duration::from_secs(10), "an issued token stays refused");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(issued.elapsed() >= Duration::from_secs(4), "the refusal was remembered ({:?})", issued.elapsed());

    // The Datacoves database goes away: 503, and the token is not remembered as refused.
    let fresh = random_token();
    insert_knox_token(&datacoves, &fresh, 1, KnoxScope::Project(10), None).await;
    drop(datacoves);
    let admin = connect("postgres").await;
    let database = &jade.seeded.datacoves_db;
    admin.batch_execute(&format!("ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false")).await.unwrap();
    admin
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", &[database])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down = jade.json(&fresh, "/api/v2/accounts/1", 503).await;
    assert_eq!(message(&down), "Authentication service unavailable. Please retry.");
    admin.batch_execute(&format!("ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true")).await.unwrap();
    jade.json(&fresh, "/api/v2/accounts/1", 200).await;
    jade.stop().await;
}

#[tokio::test]
async fn a_flood_of_made_up_tokens_leaves_the_catalog_its_connections() {
    let jade = TestJade::start(
        Scenario::default(),
        &[("AUTH_VERIFIER", "database"), ("AUTH_POOL_SIZE", "2"), ("DATACOVES_POOL_SIZE", "4")],
    )
    .await;
    // Ada's token is verified (and kept) before the flood.
    jade.json(DB_ACME, "/api/v2/accounts/1/projects", 200).await;

    // The token table is locked: every verification waits, holding its connection, as
    // under a flood heavier than the database can answer.
    let locker = connect(&jade.seeded.datacoves_db).await;
    locker.batch_execute("BEGIN; LOCK TABLE iam_datacovestoken IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let flood: Vec<_> = (0..200)
        .map(|_| {
            let client = jade.client.clone();
            let url = jade.url("/api/v2/accounts/1/projects");
            tokio::spawn(async move {
                let response =
                    client.get(url).header("Authorization", format!("Token {}", random_token())).send().await.unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(flood.iter().all(|task| !task.is_finished()), "the flood waits on the locked table");

    // Catalog reads for the verified token answer promptly meanwhile.
    for path in ["/api/v2/accounts/1/projects", "/api/v2/accounts/1/environments", "/api/v2/accounts/1"] {
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(5), jade.get(DB_ACME, path))
            .await
            .unwrap_or_else(|_| panic!("{path} starved by the flood"));
        assert_eq!(response.status(), 200, "{path}");
        assert!(started.elapsed() < Duration::from_secs(2), "{path} took {:?}", started.elapsed());
    }

    // The lock goes: every made-up token is refused, none fails.
    locker.batch_execute("COMMIT").await.unwrap();
    let statuses = tokio::time::timeout(Duration::from_secs(25), futures::future::join_all(flood)).await.unwrap();
    assert!(statuses.into_iter().all(|status| status.unwrap() == 401));
    jade.stop().await;
}
