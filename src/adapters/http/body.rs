//! Streamed response bodies: stored manifests and files go out chunk by chunk, wrapped in
//! the contract's JSON without ever being held whole.

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt, stream};
use poem::Body;

use crate::ports::storage::{Blob, ByteStream};

type Chunks = std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

fn text(bytes: impl Into<Bytes>) -> Chunks {
    let bytes = bytes.into();
    Box::pin(stream::once(async move { Ok(bytes) }))
}

/// The body as stored, with `Content-Length` when the backend told its size (a body that
/// then ends short or runs long aborts the answer: the client never takes it as whole).
pub fn raw(blob: Blob) -> Body {
    match blob.len {
        Some(len) => Body::from(http_body_util::combinators::BoxBody::new(Sized {
            body: std::sync::Mutex::new(blob.body),
            remaining: len,
        })),
        None => Body::from_bytes_stream(blob.body),
    }
}

/// A stream of known length, so hyper writes `Content-Length` instead of chunking.
struct Sized {
    /// Only ever reached through `&mut` (`get_mut`, no locking): the Mutex makes it `Sync`.
    body: std::sync::Mutex<ByteStream>,
    remaining: u64,
}

impl hyper::body::Body for Sized {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::io::Result<hyper::body::Frame<Bytes>>>> {
        let body = self.body.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        body.poll_next_unpin(cx).map(|chunk| {
            chunk.map(|chunk| {
                let chunk = chunk?;
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Ok(hyper::body::Frame::data(chunk))
            })
        })
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// `{"data":"<the body as a JSON string>"}`, how the first Jade answered artifacts.
pub fn data_string(body: ByteStream) -> Body {
    Body::from_bytes_stream(text(&b"{\"data\":"[..]).chain(json_string(body)).chain(text(&b"}"[..])))
}

const REPLACEMENT: &str = "\u{FFFD}";

/// A body as a JSON string, quotes included, always valid JSON: bytes that are not UTF-8
/// become U+FFFD exactly as `String::from_utf8_lossy` would replace them, and a UTF-8
/// sequence split across chunks is carried over to the next chunk.
pub fn json_string(body: ByteStream) -> Chunks {
    let escaped = stream::unfold(Some((body, Vec::new())), |state| async move {
        let (mut body, mut carry) = state?;
        match body.next().await {
            Some(Ok(chunk)) => {
                let out = escape_lossy(&mut carry, &chunk);
                Some((Ok(out), Some((body, carry))))
            }
            Some(Err(error)) => Some((Err(error), None)),
            // A sequence cut short at the very end is one replacement character.
            None if carry.is_empty() => None,
            None => Some((Ok(Bytes::from_static(REPLACEMENT.as_bytes())), None)),
        }
    });
    Box::pin(text(&b"\""[..]).chain(escaped).chain(text(&b"\""[..])))
}

/// Escapes `carry` (an incomplete sequence left by the previous chunk) followed by `chunk`,
/// leaving in `carry` what may still be completed by the next chunk.
fn escape_lossy(carry: &mut Vec<u8>, chunk: &[u8]) -> Bytes {
    let joined;
    let mut rest: &[u8] = if carry.is_empty() {
        chunk
    } else {
        joined = [std::mem::take(carry).as_slice(), chunk].concat();
        &joined
    };
    let mut out = BytesMut::with_capacity(rest.len() + rest.len() / 8);
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                escape(valid.as_bytes(), &mut out);
                break;
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                escape(valid, &mut out);
                match error.error_len() {
                    Some(invalid) => {
                        out.put_slice(REPLACEMENT.as_bytes());
                        rest = &after[invalid..];
                    }
                    None => {
                        carry.extend_from_slice(after);
                        break;
                    }
                }
            }
        }
    }
    out.freeze()
}

/// JSON-escapes valid UTF-8 byte by byte (only `"`, `\` and control bytes change).
fn escape(chunk: &[u8], out: &mut BytesMut) {
    for &byte in chunk {
        match byte {
            b'"' => out.put_slice(b"\\\""),
            b'\\' => out.put_slice(b"\\\\"),
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b'\t' => out.put_slice(b"\\t"),
            0x00..=0x1f => out.put_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => out.put_u8(byte),
        }
    }
}

/// `{"data":{…file fields…,"contents":<body>}}`: the body inline when it is JSON, as a
/// string otherwise.
pub fn file_with_contents(file_json: serde_json::Value, contents: ByteStream, is_json: bool) -> Body {
    let mut head = serde_json::to_string(&file_json).expect("a JSON value serializes");
    // Reopen the object to append `contents` as its last member.
    head.pop();
    head.insert_str(0, "{\"data\":");
    head.push_str(if head.ends_with('{') { "\"contents\":" } else { ",\"contents\":" });
    let contents: Chunks = if is_json { Box::pin(contents) } else { json_string(contents) };
    Body::from_bytes_stream(text(head).chain(contents).chain(text(&b"}}"[..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(body: Body) -> String {
        String::from_utf8(body.into_vec().await.unwrap()).unwrap()
    }

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        Box::pin(stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn bodies_become_valid_json_strings_across_chunk_boundaries() {
        let original = "{\"a\": \"é\\\"\n\t\u{1}\"}";
        let bytes = original.as_bytes();
        // Split inside the two-byte é.
        let split = original.find('é').unwrap() + 1;
        let (first, second) = bytes.split_at(split);
        let first: &'static [u8] = Box::leak(first.to_vec().into_boxed_slice());
        let second: &'static [u8] = Box::leak(second.to_vec().into_boxed_slice());
        let body = collect(data_string(chunks(&[first, second]))).await;
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["data"], original);
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_become_replacement_characters_wherever_chunks_split() {
        let mut bytes = b"a\xff\x00\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3(\x80\xed\xa0\x80z".to_vec();
        bytes.extend((0u8..=255).rev());
        bytes.extend_from_slice(b"\xe2\x82");
        let expected = String::from_utf8_lossy(&bytes).into_owned();
        for size in [1, 2, 3, 5, 7, bytes.len()] {
            let parts: Vec<&'static [u8]> =
                bytes.chunks(size).map(|c| &*Box::leak(c.to_vec().into_boxed_slice())).collect();
            let body = collect(data_string(chunks(&parts))).await;
            let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(parsed["data"], expected, "chunks of {size}");
        }
    }

    #[tokio::test]
    async fn file_contents_are_inlined_or_quoted() {
        let file = serde_json::json!({"slug": "s", "tag": "t"});
        let body = collect(file_with_contents(file.clone(), chunks(&[b"{\"k\":", b"[1]}"]), true)).await;
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed, serde_json::json!({"data": {"slug": "s", "tag": "t", "contents": {"k": [1]}}}));
        let body = collect(file_with_contents(file, chunks(&[b"plain \"text\""]), false)).await;
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["data"]["contents"], "plain \"text\"");
    }
}
