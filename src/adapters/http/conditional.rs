//! Conditional reads (contract §8): strong entity tags on manifests, files and artifacts, and
//! `If-None-Match` answered with 304 before storage is asked (RFC 9110 §8.8.3, §13.1.2).

use poem_openapi::registry::{MetaHeader, MetaResponse};
use poem_openapi::types::Type;
use sha2::{Digest, Sha256};

/// What the compression middleware appends to an entity tag when it encodes the answer
/// (`"x"` becomes `"x-gzip"`): a different representation needs a different strong tag. A
/// request naming the encoded form matches the resource all the same.
pub const CODING_SUFFIXES: [&str; 2] = ["-gzip", "-zstd"];

/// A strong entity tag: its opaque value, without the quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(String);

impl ETag {
    /// A version that may be shown as it is (printable ASCII, no `"`), e.g. `m42-t`.
    pub fn plain(version: String) -> Self {
        debug_assert!(version.bytes().all(|b| b.is_ascii_graphic() && b != b'"'), "{version:?}");
        ETag(version)
    }

    /// A version that must not be shown (it holds storage keys, inode numbers): `prefix`, the
    /// first 20 hex digits of its SHA-256, then `-representation` when one is given (the same
    /// version sent as two different bodies needs two tags).
    pub fn digest(prefix: &str, version: &str, representation: &str) -> Self {
        let digest = Sha256::digest(version.as_bytes());
        let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        match representation {
            "" => ETag(format!("{prefix}{hex}")),
            representation => ETag(format!("{prefix}{hex}-{representation}")),
        }
    }

    /// The header value: the tag in quotes.
    pub fn header(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

/// Whether `If-None-Match` (`if_none_match`, the header's values joined by `,`) names the
/// current representation `etag`: `*`, or any listed tag equal to it by the weak comparison
/// (a `W/` prefix is ignored), in its plain form or an encoded one (`"x-gzip"`). Answers the
/// tag the 304 carries: the form the client named, so a cache finds the answer it holds
/// (`etag` itself for `*`). Entries that are not entity tags are skipped.
pub fn not_modified(if_none_match: Option<&str>, etag: &ETag) -> Option<ETag> {
    let mut rest = if_none_match?;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            return None;
        }
        if let Some(after) = rest.strip_prefix('*')
            && (after.trim_start().is_empty() || after.trim_start().starts_with(','))
        {
            return Some(etag.clone());
        }
        let tagged = rest.strip_prefix("W/").unwrap_or(rest);
        if let Some(quoted) = tagged.strip_prefix('"')
            && let Some(end) = quoted.find('"')
        {
            let opaque = &quoted[..end];
            if let Some(matched) = matching(opaque, etag) {
                return Some(matched);
            }
            rest = &quoted[end + 1..];
        } else {
            // Not an entity tag: skip to the next entry.
            match rest.find(',') {
                Some(comma) => rest = &rest[comma + 1..],
                None => return None,
            }
        }
    }
}

fn matching(opaque: &str, etag: &ETag) -> Option<ETag> {
    if opaque == etag.0 {
        return Some(etag.clone());
    }
    let suffix = opaque.strip_prefix(etag.0.as_str())?;
    CODING_SUFFIXES.contains(&suffix).then(|| ETag(opaque.to_owned()))
}

/// The `ETag` header in the OpenAPI document.
pub fn etag_header() -> MetaHeader {
    MetaHeader {
        name: "etag".to_owned(),
        description: Some(
            "A strong entity tag of this answer; send it back in `If-None-Match` to get 304 while it is unchanged. \
             Answers sent compressed carry it with `-gzip` or `-zstd` appended."
                .to_owned(),
        ),
        required: false,
        deprecated: false,
        schema: String::schema_ref(),
    }
}

/// The 304 answer in the OpenAPI document.
pub fn not_modified_response() -> MetaResponse {
    MetaResponse {
        description: "Not Modified: `If-None-Match` names the current entity tag (or is `*`). No body; the \
                      `ETag` header repeats the tag that matched.",
        status: Some(304),
        status_range: None,
        content: vec![],
        headers: vec![MetaHeader {
            description: Some("The entity tag that matched.".to_owned()),
            required: true,
            ..etag_header()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str) -> Option<String> {
        not_modified(Some(header), &ETag::plain("m42-t".into())).map(|tag| tag.header())
    }

    #[test]
    fn if_none_match_follows_rfc_9110() {
        assert_eq!(check("\"m42-t\""), Some("\"m42-t\"".into()));
        assert_eq!(check("W/\"m42-t\""), Some("\"m42-t\"".into()), "weak comparison");
        assert_eq!(check("\"a\", \"m42-t\""), Some("\"m42-t\"".into()), "a list");
        assert_eq!(check("\"a\",W/\"m42-t\" , \"b\""), Some("\"m42-t\"".into()));
        assert_eq!(check("*"), Some("\"m42-t\"".into()));
        assert_eq!(check(" * "), Some("\"m42-t\"".into()));
        assert_eq!(check("\"m42-t-gzip\""), Some("\"m42-t-gzip\"".into()), "the encoded form");
        assert_eq!(check("\"m42-t-zstd\""), Some("\"m42-t-zstd\"".into()));
        assert_eq!(check("\"m42-t-br\""), None);
        assert_eq!(check("\"m42-f\""), None);
        assert_eq!(check("\"m42\""), None);
        assert_eq!(check("m42-t"), None, "unquoted is not an entity tag");
        assert_eq!(check("garbage, \"m42-t\""), Some("\"m42-t\"".into()), "a bad entry is skipped");
        assert_eq!(check("\"a,b\", \"m42-t\""), Some("\"m42-t\"".into()), "a comma inside quotes");
        assert_eq!(check("\"unterminated"), None);
        assert_eq!(check("*x"), None);
        assert_eq!(check(""), None);
        assert_eq!(not_modified(None, &ETag::plain("m42-t".into())), None);
    }

    #[test]
    fn digests_hide_the_version_and_name_the_representation() {
        let json = ETag::digest("f", "7\n/environments/dev/file-versions/t/x\n1", "j");
        let bytes = ETag::digest("f", "7\n/environments/dev/file-versions/t/x\n1", "b");
        assert_ne!(json, bytes);
        assert!(json.header().starts_with("\"f") && json.header().ends_with("-j\""), "{}", json.header());
        assert!(!json.header().contains("environments"));
        assert_eq!(json.header().len(), 1 + 1 + 20 + 2 + 1);
        assert_ne!(ETag::digest("f", "8\n/k\n1", "j"), ETag::digest("f", "7\n/k\n1", "j"));
    }
}
