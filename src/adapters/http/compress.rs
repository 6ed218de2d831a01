//! Answers compressed on the way out (contract §8): `gzip` or `zstd` as `Accept-Encoding`
//! asks, for answers over 1 KiB, chunk by chunk (a 150 MB manifest is never held whole).
//! Stored bodies stay as they were uploaded; only the wire is compressed.
//!
//! poem's own `Compression` middleware is not used: it never negotiates `zstd`, has no
//! minimum size, and also decompresses request bodies.

use async_compression::Level;
use async_compression::tokio::bufread::{GzipEncoder, ZstdEncoder};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use poem::http::header::{self, HeaderMap, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use tokio_util::io::{ReaderStream, StreamReader};

use super::conditional::CODING_SUFFIXES;

/// Answers of at most this many bytes go out as they are: compressing them saves little and
/// costs a frame of its own.
pub const MIN_SIZE: u64 = 1024;

/// Fast levels: a manifest is compressed anew on every read, on a core the other requests
/// share, so the level must keep up with the network. On the test fixture manifest zstd 1
/// shrinks 8.5× at about 250 MB/s and gzip 1 6× at about 140 MB/s (per core, busy machine);
/// gzip 3 gains 9.3× but runs 2.5 times slower, gzip 6 5 times; zstd 2 and 3 gain little.
const GZIP_LEVEL: i32 = 1;
const ZSTD_LEVEL: i32 = 1;

/// Size of the compressed chunks sent.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Zstd,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Coding::Gzip => CODING_SUFFIXES[0],
            Coding::Zstd => CODING_SUFFIXES[1],
        }
    }
}

/// The coding `Accept-Encoding` prefers (RFC 9110 §12.5.3): the highest quality above zero
/// among `zstd` and `gzip` (`x-gzip` included), named or through `*`; zstd wins a tie (it
/// compresses much faster). `None` without the header, for `identity`, when both are
/// refused (`q=0`), or when `identity` is named with a higher quality.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Coding> {
    let (mut gzip, mut zstd, mut any, mut identity) = (None, None, None, None);
    for entry in values.into_iter().flat_map(|value| value.split(',')) {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let mut quality = Some(1.0f32);
        for parameter in parts {
            if let Some((key, value)) = parameter.split_once('=')
                && key.trim().eq_ignore_ascii_case("q")
            {
                quality = value.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q));
            }
        }
        // A malformed quality: the entry is ignored.
        let Some(quality) = quality else { continue };
        let slot = match name.as_str() {
            "gzip" | "x-gzip" => &mut gzip,
            "zstd" => &mut zstd,
            "*" => &mut any,
            "identity" => &mut identity,
            _ => continue,
        };
        *slot = Some(slot.map_or(quality, |q: f32| q.max(quality)));
    }
    let gzip = gzip.or(any).unwrap_or(0.0);
    let zstd = zstd.or(any).unwrap_or(0.0);
    let (coding, quality) = if zstd >= gzip { (Coding::Zstd, zstd) } else { (Coding::Gzip, gzip) };
    (quality > 0.0 && identity.is_none_or(|identity| quality >= identity)).then_some(coding)
}

/// Media types that are compressed already: sent as they are.
fn compressible(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return true };
    let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (kind, subtype) = media.split_once('/').unwrap_or((media.as_str(), ""));
    match kind {
        "image" => subtype == "svg+xml",
        "audio" | "video" => false,
        _ => !matches!(
            media.as_str(),
            "application/gzip"
                | "application/x-gzip"
                | "application/zstd"
                | "application/zip"
                | "application/x-bzip2"
                | "application/x-xz"
                | "application/x-7z-compressed"
                | "application/vnd.rar"
                | "font/woff"
                | "font/woff2"
        ),
    }
}

/// The middleware: wraps the public app (not the metrics listener).
pub struct Compression;

impl<E: Endpoint> Middleware<E> for Compression {
    type Output = CompressionEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        CompressionEndpoint { inner }
    }
}

pub struct CompressionEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for CompressionEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let head = request.method() == Method::HEAD;
        let coding =
            negotiate(request.headers().get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()));
        let response = match self.inner.call(request).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        Ok(encode(response, coding, head).await)
    }
}

/// Compresses `response` with `coding` when it may and is large enough; adds
/// `Vary: Accept-Encoding` to every answer whose form depends on that header.
pub async fn encode(mut response: Response, coding: Option<Coding>, head: bool) -> Response {
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED {
        // The 200 it stands for varies.
        vary(response.headers_mut());
        return response;
    }
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || response.headers().contains_key(header::CONTENT_ENCODING)
        || !compressible(response.headers())
    {
        return response;
    }
    vary(response.headers_mut());
    let Some(coding) = coding.filter(|_| !head) else { return response };

    let body = response.take_body();
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let boxed: http_body_util::combinators::BoxBody<Bytes, std::io::Error> = body.into();
    let len = declared.or_else(|| hyper::body::Body::size_hint(&boxed).exact());
    let body = Body::from(boxed);
    let chunks = match len {
        Some(len) if len <= MIN_SIZE => {
            response.set_body(body);
            return response;
        }
        Some(_) => body.into_bytes_stream().boxed(),
        // Unknown: look at no more than the first MIN_SIZE + 1 bytes before deciding.
        None => match peek(body.into_bytes_stream().boxed()).await {
            Peeked::Small(bytes) => {
                response.set_body(Body::from_bytes(bytes));
                return response;
            }
            Peeked::Failed(chunks) => {
                // Sent as it is: the error aborts the answer as it would have.
                response.set_body(Body::from_bytes_stream(chunks));
                return response;
            }
            Peeked::Large(chunks) => chunks,
        },
    };
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok())
        && let Some(opaque) = etag.strip_prefix('"').and_then(|e| e.strip_suffix('"'))
        && let Ok(value) = HeaderValue::from_str(&format!("\"{opaque}{}\"", coding.suffix()))
    {
        // A strong tag names one representation: the encoded one gets its own.
        headers.insert(header::ETAG, value);
    }
    response.set_body(compressed(chunks, coding));
    response
}

type Chunks = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

enum Peeked {
    /// The whole body, at most `MIN_SIZE` bytes.
    Small(Bytes),
    /// The chunks read, the last an error.
    Failed(Chunks),
    /// More than `MIN_SIZE` bytes: the chunks read, then the rest.
    Large(Chunks),
}

async fn peek(mut body: Chunks) -> Peeked {
    let mut read: Vec<std::io::Result<Bytes>> = Vec::new();
    let mut seen = 0u64;
    while seen <= MIN_SIZE {
        match body.next().await {
            Some(Ok(chunk)) => {
                seen += chunk.len() as u64;
                read.push(Ok(chunk));
            }
            Some(Err(error)) => {
                read.push(Err(error));
                return Peeked::Failed(futures::stream::iter(read).boxed());
            }
            None => {
                let mut whole = bytes::BytesMut::with_capacity(seen as usize);
                for chunk in read.into_iter().flatten() {
                    whole.extend_from_slice(&chunk);
                }
                return Peeked::Small(whole.freeze());
            }
        }
    }
    Peeked::Large(futures::stream::iter(read).chain(body).boxed())
}

/// The chunks compressed as they come. An error in them ends the compressed stream with that
/// error, so the answer is cut off rather than ended cleanly.
fn compressed(chunks: Chunks, coding: Coding) -> Body {
    let reader = StreamReader::new(chunks);
    match coding {
        Coding::Gzip => Body::from_bytes_stream(ReaderStream::with_capacity(
            GzipEncoder::with_quality(reader, Level::Precise(GZIP_LEVEL)),
            CHUNK,
        )),
        Coding::Zstd => Body::from_bytes_stream(ReaderStream::with_capacity(
            ZstdEncoder::with_quality(reader, Level::Precise(ZSTD_LEVEL)),
            CHUNK,
        )),
    }
}

/// Adds `Accept-Encoding` to `Vary` unless it is there.
fn vary(headers: &mut HeaderMap) {
    let present =
        headers.get_all(header::VARY).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn accept_encoding_is_negotiated_by_quality() {
        let n = |value: &str| negotiate([value]);
        assert_eq!(n(""), None);
        assert_eq!(n("identity"), None);
        assert_eq!(n("gzip"), Some(Coding::Gzip));
        assert_eq!(n("x-gzip"), Some(Coding::Gzip));
        assert_eq!(n("GZip, deflate, br"), Some(Coding::Gzip));
        assert_eq!(n("zstd"), Some(Coding::Zstd));
        assert_eq!(n("gzip, zstd"), Some(Coding::Zstd), "zstd wins a tie");
        assert_eq!(n("zstd;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(n("zstd;q=0, gzip;q=0"), None, "q=0 refuses");
        assert_eq!(n("gzip;q=0"), None);
        assert_eq!(n("gzip;Q=0.000"), None);
        assert_eq!(n("*"), Some(Coding::Zstd));
        assert_eq!(n("*;q=0.5, zstd;q=0"), Some(Coding::Gzip), "the wildcard covers what is not named");
        assert_eq!(n("*;q=0"), None);
        assert_eq!(n("identity;q=1, gzip;q=0.5"), None, "identity preferred");
        assert_eq!(n("identity;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(n("gzip;q=2"), None, "a malformed quality is ignored");
        assert_eq!(n("br, deflate"), None);
        assert_eq!(negotiate(["deflate", "gzip;q=0.8"]), Some(Coding::Gzip), "several header lines");
    }

    #[test]
    fn compressed_media_is_left_alone() {
        let with = |content_type: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
            compressible(&headers)
        };
        assert!(with("application/json; charset=utf-8"));
        assert!(with("application/octet-stream"));
        assert!(with("image/svg+xml"));
        assert!(!with("image/png"));
        assert!(!with("Application/Zip"));
        assert!(compressible(&HeaderMap::new()));
    }

    fn json(len: usize) -> Vec<u8> {
        let mut out = b"{\"nodes\":{".to_vec();
        let mut i = 0;
        while out.len() < len {
            out.extend_from_slice(format!("\"model.p.m{i}\":{{\"name\":\"m{i}\",\"tags\":[]}},").as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn streamed(bytes: Vec<u8>, chunk: usize) -> Body {
        let chunks: Vec<std::io::Result<Bytes>> = bytes.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Body::from_bytes_stream(futures::stream::iter(chunks))
    }

    fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        match coding {
            Coding::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
                out
            }
            Coding::Zstd => zstd::decode_all(bytes).unwrap(),
        }
    }

    #[tokio::test]
    async fn streamed_bodies_are_compressed_only_over_the_minimum() {
        for coding in [Coding::Gzip, Coding::Zstd] {
            for (len, chunk) in [(1024, 100), (1025, 100), (1025, 1), (200_000, 4096), (300, 300), (0, 1)] {
                let original = json(len);
                let response = Response::builder()
                    .header(header::ETAG, "\"m1-t\"")
                    .content_type("application/json")
                    .body(streamed(original.clone(), chunk));
                let encoded = encode(response, Some(coding), false).await;
                let headers = encoded.headers().clone();
                assert_eq!(headers[header::VARY], "accept-encoding");
                let wire = encoded.into_body().into_vec().await.unwrap();
                if len as u64 > MIN_SIZE {
                    assert_eq!(headers[header::CONTENT_ENCODING], coding.name(), "{len}");
                    assert_eq!(headers[header::ETAG], format!("\"m1-t{}\"", coding.suffix()));
                    assert!(decode(coding, &wire) == original, "{coding:?} {len}: decodes to the original");
                } else {
                    assert!(!headers.contains_key(header::CONTENT_ENCODING), "{len}");
                    assert_eq!(headers[header::ETAG], "\"m1-t\"");
                    assert!(wire == original);
                }
            }
        }
    }

    #[tokio::test]
    async fn known_lengths_decide_without_reading() {
        let small = Response::builder().body(vec![b'a'; 1024]);
        let encoded = encode(small, Some(Coding::Gzip), false).await;
        assert!(!encoded.headers().contains_key(header::CONTENT_ENCODING));
        let large = Response::builder().header(header::CONTENT_LENGTH, 5000).body(streamed(json(5000), 700));
        let encoded = encode(large, Some(Coding::Gzip), false).await;
        assert!(!encoded.headers().contains_key(header::CONTENT_LENGTH));
        assert_eq!(encoded.headers()[header::CONTENT_ENCODING], "gzip");
        let wire = encoded.into_body().into_vec().await.unwrap();
        assert_eq!(decode(Coding::Gzip, &wire), json(5000));
    }

    #[tokio::test]
    async fn answers_that_must_not_change_are_left_alone() {
        let body = || json(4000);
        // HEAD, 304, 204 and an encoded answer: never compressed.
        let head = encode(Response::builder().body(body()), Some(Coding::Zstd), true).await;
        assert!(!head.headers().contains_key(header::CONTENT_ENCODING));
        assert_eq!(head.headers()[header::VARY], "accept-encoding");
        let not_modified = encode(
            Response::builder().status(StatusCode::NOT_MODIFIED).header(header::ETAG, "\"x\"").finish(),
            Some(Coding::Zstd),
            false,
        )
        .await;
        assert_eq!(not_modified.headers()[header::ETAG], "\"x\"");
        assert_eq!(not_modified.headers()[header::VARY], "accept-encoding");
        let encoded = Response::builder().header(header::CONTENT_ENCODING, "br").body(body());
        let encoded = encode(encoded, Some(Coding::Zstd), false).await;
        assert_eq!(encoded.headers()[header::CONTENT_ENCODING], "br");
        let png = Response::builder().content_type("image/png").body(body());
        assert!(!encode(png, Some(Coding::Zstd), false).await.headers().contains_key(header::CONTENT_ENCODING));
        // No coding asked: as it is, but it varies.
        let plain = encode(Response::builder().header(header::VARY, "Origin").body(body()), None, false).await;
        assert!(!plain.headers().contains_key(header::CONTENT_ENCODING));
        let vary: Vec<_> = plain.headers().get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Origin", "accept-encoding"]);
        assert_eq!(plain.into_body().into_vec().await.unwrap(), body());
    }

    #[tokio::test]
    async fn a_failing_source_aborts_the_compressed_answer() {
        for coding in [Coding::Gzip, Coding::Zstd] {
            // Fails before the decision is made, and after it.
            for good in [10usize, 100_000] {
                let chunks = futures::stream::iter(vec![
                    Ok(Bytes::from(json(good))),
                    Err(std::io::Error::other("storage went away")),
                ]);
                let response = Response::builder().body(Body::from_bytes_stream(chunks));
                let encoded = encode(response, Some(coding), false).await;
                let result = encoded.into_body().into_vec().await;
                assert!(result.is_err(), "{coding:?} after {good} bytes: the answer ended cleanly");
            }
        }
    }

    /// A large body goes out compressed chunk by chunk, never gathered whole, and decodes to
    /// itself. (Its speed is measured by `bench/manifests.sh`, not here.)
    #[tokio::test]
    async fn large_bodies_stream_chunk_by_chunk() {
        let original = json(8 << 20);
        for coding in [Coding::Zstd, Coding::Gzip] {
            let response = Response::builder().body(streamed(original.clone(), 64 * 1024));
            let mut stream = encode(response, Some(coding), false).await.into_body().into_bytes_stream();
            let (mut wire, mut chunks) = (Vec::new(), 0usize);
            while let Some(chunk) = stream.next().await {
                wire.extend_from_slice(&chunk.unwrap());
                chunks += 1;
            }
            assert!(chunks > 1, "{coding:?}: streamed, not whole");
            assert!(wire.len() * 4 < original.len(), "{coding:?}: {} bytes on the wire", wire.len());
            assert!(decode(coding, &wire) == original, "{coding:?}: decodes to the body");
        }
    }
}
