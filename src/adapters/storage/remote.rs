//! What the remote backends (MinIO, S3, Azure Blob) share: short, credential-free error
//! messages and bounded waits on response bodies.

use std::time::Duration;

use futures::StreamExt;

use crate::ports::storage::ByteStream;

/// Longest `Backend` message.
const MAX_ERROR_LEN: usize = 300;

/// An error and its causes, with URLs cut to their host.
pub(super) fn chain(error: &dyn std::error::Error) -> String {
    shorten_urls(&crate::adapters::error_chain(error))
}

/// Cuts every `http(s)://` URL in `text` down to its scheme and authority: paths make
/// messages long, and a query may hold a SAS token.
pub(super) fn shorten_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        let url = &rest[at + 3..];
        let url_end = url.find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>')).unwrap_or(url.len());
        let authority_end = url[..url_end].find(['/', '?', '#']).unwrap_or(url_end);
        out.push_str(&url[..authority_end]);
        rest = &url[url_end..];
    }
    out.push_str(rest);
    out
}

/// Cuts a message to `MAX_ERROR_LEN` characters.
pub(super) fn truncate(mut message: String) -> String {
    if message.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// Ends the stream with an error when no chunk arrives within `limit`.
pub(super) fn idle_timeout(stream: ByteStream, limit: Duration, backend: &'static str) -> ByteStream {
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(limit, stream.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(e), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{backend} body: no data for {}s", limit.as_secs()),
                )),
                None,
            )),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_keep_only_their_host() {
        let message = "error sending request for url (https://acct.blob.core.windows.net/c/a%20b.json?sv=2022&sig=SECRET): connection refused";
        assert_eq!(
            shorten_urls(message),
            "error sending request for url (https://acct.blob.core.windows.net): connection refused"
        );
        assert_eq!(shorten_urls("no url here"), "no url here");
        assert_eq!(shorten_urls("http://h:1"), "http://h:1");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_ERROR_LEN + "…".len() && cut.ends_with('…'));
    }
}
