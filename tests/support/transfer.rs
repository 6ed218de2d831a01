//! Transfer checks (contract §8): answers read as they come off the wire (the test client
//! decompresses nothing), decoded here with independent gzip and zstd decoders, and the
//! conditional reads every read route must honour.

use std::io::Read;

use reqwest::header::HeaderMap;

use super::TestJade;

/// One answer as sent: status, headers, and the body's bytes on the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub wire: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("an ASCII header"))
    }

    pub fn etag(&self) -> &str {
        self.header("etag").unwrap_or_else(|| panic!("no ETag on a {} answer", self.status))
    }

    /// The body decoded as its `Content-Encoding` says (none, `gzip` or `zstd`).
    pub fn decoded(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            None => self.wire.clone(),
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(self.wire.as_slice()).read_to_end(&mut out).expect("valid gzip");
                out
            }
            Some("zstd") => zstd::decode_all(self.wire.as_slice()).expect("valid zstd"),
            Some(other) => panic!("unexpected content-encoding {other}"),
        }
    }

    /// Whether `Vary` names `Accept-Encoding`.
    pub fn varies_by_encoding(&self) -> bool {
        self.headers
            .get_all("vary")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .any(|name| name.trim().eq_ignore_ascii_case("accept-encoding"))
    }
}

/// `GET path` as `token` with extra request headers.
pub async fn get(jade: &TestJade, token: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = jade.client.get(jade.url(path)).bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let wire = response.bytes().await.unwrap().to_vec();
    Answer { status, headers, wire }
}

/// What every read route must do with a body over 1 KiB: `expected` is exactly what the
/// identity answer holds. Answers the plain answer's ETag.
pub async fn sent_compressed(
    jade: &TestJade,
    token: &str,
    path: &str,
    extra: &[(&str, &str)],
    expected: &[u8],
) -> String {
    assert!(expected.len() > 1024, "{path}: a body over 1 KiB is needed");
    let plain = get(jade, token, path, extra).await;
    assert_eq!(plain.status, 200, "{path}: {}", String::from_utf8_lossy(&plain.wire));
    assert_eq!(plain.header("content-encoding"), None, "{path}: compressed without being asked");
    assert!(plain.wire == expected, "{path}: the plain answer is not the expected bytes");
    assert!(plain.varies_by_encoding(), "{path}: no Vary: Accept-Encoding");
    let etag = plain.etag().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{path}: a strong ETag, got {etag}");
    for (accept, coding) in [
        ("gzip", Some("gzip")),
        ("zstd", Some("zstd")),
        ("gzip, zstd", Some("zstd")),
        ("GZIP;q=0.9, zstd;q=0.5", Some("gzip")),
        ("br, *;q=0.1", Some("zstd")),
        ("gzip;q=0, zstd;q=0", None),
        ("*;q=0", None),
        ("identity", None),
    ] {
        let mut headers = extra.to_vec();
        headers.push(("accept-encoding", accept));
        let answer = get(jade, token, path, &headers).await;
        assert_eq!(answer.status, 200, "{path} ({accept})");
        assert_eq!(answer.header("content-encoding"), coding, "{path} ({accept})");
        assert!(answer.varies_by_encoding(), "{path} ({accept}): no Vary");
        assert!(answer.decoded() == expected, "{path} ({accept}): the decoded answer differs from the stored bytes");
        match coding {
            Some(coding) => {
                assert!(answer.wire.len() * 3 < expected.len(), "{path} ({accept}): {} bytes", answer.wire.len());
                assert_eq!(answer.header("content-length"), None, "{path} ({accept})");
                assert_eq!(answer.etag(), format!("{}-{coding}\"", etag.trim_end_matches('"')), "{path} ({accept})");
            }
            None => assert_eq!(answer.etag(), etag, "{path} ({accept})"),
        }
    }
    etag
}

/// `If-None-Match` on `path` whose current tag is `etag`: 304 (no body, the tag that matched,
/// `Vary`) for the tag itself, weak, in a list, `*` and the encoded forms; 200 for others.
pub async fn answers_not_modified(jade: &TestJade, token: &str, path: &str, extra: &[(&str, &str)], etag: &str) {
    let bare = etag.trim_matches('"');
    let cases = [
        (etag.to_owned(), etag.to_owned()),
        (format!("W/{etag}"), etag.to_owned()),
        (format!("\"other\", {etag}"), etag.to_owned()),
        ("*".to_owned(), etag.to_owned()),
        (format!("\"{bare}-gzip\""), format!("\"{bare}-gzip\"")),
        (format!("\"x\",\"{bare}-zstd\""), format!("\"{bare}-zstd\"")),
    ];
    for (if_none_match, echoed) in cases {
        for accept in [None, Some("gzip, zstd")] {
            let mut headers = extra.to_vec();
            headers.push(("if-none-match", &if_none_match));
            if let Some(accept) = accept {
                headers.push(("accept-encoding", accept));
            }
            let answer = get(jade, token, path, &headers).await;
            assert_eq!(answer.status, 304, "{path}: If-None-Match {if_none_match}");
            assert!(answer.wire.is_empty(), "{path}: a 304 with a body");
            assert_eq!(answer.etag(), echoed, "{path}: If-None-Match {if_none_match}");
            assert!(answer.varies_by_encoding(), "{path}: a 304 without Vary");
            assert_eq!(answer.header("content-encoding"), None);
        }
    }
    for other in ["\"nope\"".to_owned(), format!("\"{bare}-br\""), format!("\"{bare}x\""), bare.to_owned()] {
        let mut headers = extra.to_vec();
        headers.push(("if-none-match", &other));
        let answer = get(jade, token, path, &headers).await;
        assert_eq!(answer.status, 200, "{path}: If-None-Match {other}");
        assert_eq!(answer.etag(), etag);
    }
}

/// The answer to `If-None-Match: <etag>` on `path`.
pub async fn conditional(jade: &TestJade, token: &str, path: &str, extra: &[(&str, &str)], etag: &str) -> Answer {
    let mut headers = extra.to_vec();
    headers.push(("if-none-match", etag));
    get(jade, token, path, &headers).await
}
