//! Files that DAGs share through Jade: rows, paths and the rules for tags and filenames.

use uuid::Uuid;

use crate::domain::Error;
use crate::domain::catalog::Timestamp;

/// The longest tag, filename or path the `files` table holds.
pub const MAX_LENGTH: usize = 255;

/// A stored file's row; its body lives in object storage under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub id: i64,
    pub slug: Uuid,
    pub filename: String,
    pub environment_slug: String,
    pub tag: String,
    /// The contract's path, rendered to clients.
    pub path: String,
    /// Where the body is stored: a version key (see [`version_key`]) for files this Jade
    /// wrote, the path itself for rows of the first Jade.
    pub key: String,
    pub inserted_at: Timestamp,
    pub updated_at: Timestamp,
}

impl File {
    /// Names the bytes and fields a read of this file answers: its row, the body it reads and
    /// when the row last changed. Every write stores the body under a fresh key, so a new
    /// upload, a replacement or a rename changes it.
    pub fn version(&self) -> String {
        format!("{}\n{}\n{}", self.id, self.key, self.updated_at.timestamp_micros())
    }
}

/// A file about to be stored: validated tag and filename, the path they make, and a fresh
/// key for its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub environment_slug: String,
    pub tag: String,
    pub filename: String,
    pub path: String,
    pub key: String,
}

impl NewFile {
    /// Validates `tag` and `filename` (422 naming the field) and builds the path.
    pub fn new(environment_slug: &str, tag: Option<&str>, filename: Option<&str>) -> Result<Self, Error> {
        let tag = check_name("tag", tag)?;
        let filename = check_name("filename", filename)?;
        let path = path(environment_slug, tag, filename);
        if path.chars().count() > MAX_LENGTH {
            return Err(Error::invalid("filename", "makes the file path longer than 255 characters"));
        }
        Ok(NewFile {
            environment_slug: environment_slug.to_owned(),
            tag: tag.to_owned(),
            filename: filename.to_owned(),
            key: version_key(&path, Uuid::new_v4()),
            path,
        })
    }
}

/// A fresh storage key for a new body of the file at `path`:
/// `/environments/{env}/file-versions/{tag}/{filename}/{version}`. A body is never written
/// over another file's: a failed upload leaves every stored file as it was, and the rows
/// switch to the new body in one transaction. No path can equal a version key (paths have
/// `files` where version keys have `file-versions`).
pub fn version_key(path: &str, version: Uuid) -> String {
    // `path` is `/environments/{env}/files/{rest}`, as `path()` builds it.
    let mut parts = path.splitn(4, '/');
    let (_, environments, environment, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
    let rest = rest.and_then(|r| r.strip_prefix("files/")).unwrap_or_default();
    format!(
        "/{}/{}/file-versions/{rest}/{}",
        environments.unwrap_or("environments"),
        environment.unwrap_or_default(),
        version.simple()
    )
}

/// `/environments/{env}/files/{tag}/{filename}`, with whitespace and `_ : . +` in the tag and
/// whitespace and `_ : +` in the filename replaced by `-`, as the first Jade built it.
pub fn path(environment_slug: &str, tag: &str, filename: &str) -> String {
    let tag: String = tag.chars().map(|c| if is_space(c) || "_:.+".contains(c) { '-' } else { c }).collect();
    let filename: String = filename.chars().map(|c| if is_space(c) || "_:+".contains(c) { '-' } else { c }).collect();
    format!("/environments/{environment_slug}/files/{tag}/{filename}")
}

// What the first Jade's `\s` matched (ASCII whitespace, vertical tab included).
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\u{0b}'
}

/// A tag or filename must be present, at most 255 characters, free of control characters,
/// and must not have an empty, `.` or `..` segment when split on `/` or `\`: no key may
/// escape its environment's prefix.
fn check_name<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, Error> {
    let value = match value {
        Some(value) if !value.is_empty() => value,
        _ => return Err(Error::invalid(field, "can't be blank")),
    };
    if value.chars().count() > MAX_LENGTH {
        return Err(Error::invalid(field, "should be at most 255 character(s)"));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if value.split(['/', '\\']).any(|segment| matches!(segment, "" | "." | "..")) {
        return Err(Error::invalid(field, "must not contain empty, '.' or '..' path segments"));
    }
    Ok(value)
}

/// Which file a request names: the first of `slug`, `tag`, `filename` that is given and not
/// empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLookup {
    /// Holds the slug as sent; one that is not a UUID finds nothing.
    Slug(String),
    Tag(String),
    Filename(String),
}

impl FileLookup {
    pub fn from_params(slug: Option<&str>, tag: Option<&str>, filename: Option<&str>) -> Option<Self> {
        let given = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_owned);
        given(slug)
            .map(FileLookup::Slug)
            .or_else(|| given(tag).map(FileLookup::Tag))
            .or_else(|| given(filename).map(FileLookup::Filename))
    }

    /// The same, for routes that accept a slug or a tag only (update, delete).
    pub fn slug_or_tag(slug: Option<&str>, tag: Option<&str>) -> Option<Self> {
        Self::from_params(slug, tag, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sit_apart_from_every_path() {
        let version = Uuid::nil();
        assert_eq!(
            version_key("/environments/dev/files/t/a/b.json", version),
            format!("/environments/dev/file-versions/t/a/b.json/{}", version.simple())
        );
        let new = NewFile::new("dev", Some("t"), Some("a.json")).unwrap();
        assert!(new.key.starts_with("/environments/dev/file-versions/t/a.json/"), "{}", new.key);
        assert_ne!(new.key, NewFile::new("dev", Some("t"), Some("a.json")).unwrap().key, "fresh each time");
    }

    #[test]
    fn paths_replace_like_the_first_jade() {
        assert_eq!(
            path("dev123", "my tag:v1.2+x_y", "my file_v1:2+3.json"),
            "/environments/dev123/files/my-tag-v1-2-x-y/my-file-v1-2-3.json"
        );
    }

    #[test]
    fn blank_names_are_refused_with_the_field_named() {
        assert_eq!(NewFile::new("dev", None, Some("a.json")), Err(Error::invalid("tag", "can't be blank")));
        assert_eq!(NewFile::new("dev", Some("t"), Some("")), Err(Error::invalid("filename", "can't be blank")));
    }

    #[test]
    fn names_that_could_escape_the_environment_are_refused() {
        for bad in ["..", "../x", "a/../b", "a\\..\\b", ".", "a//b", "/abs", "a/", "x\u{0}y", "new\nline"] {
            let Err(Error::Invalid(errors)) = NewFile::new("dev", Some(bad), Some("f.json")) else {
                panic!("tag {bad:?} was accepted");
            };
            assert!(errors.contains_key("tag"));
            let Err(Error::Invalid(errors)) = NewFile::new("dev", Some("t"), Some(bad)) else {
                panic!("filename {bad:?} was accepted");
            };
            assert!(errors.contains_key("filename"));
        }
        // Dots inside a segment are fine.
        assert!(NewFile::new("dev", Some("v1..2"), Some("a..b.json")).is_ok());
        assert!(NewFile::new("dev", Some("team/nightly"), Some("dir/a.json")).is_ok());
    }

    #[test]
    fn over_long_names_and_paths_are_refused() {
        let long = "x".repeat(256);
        assert!(NewFile::new("dev", Some(&long), Some("f")).is_err());
        let half = "x".repeat(130);
        let Err(Error::Invalid(errors)) = NewFile::new("dev", Some(&half), Some(&half)) else {
            panic!("a path over 255 characters was accepted");
        };
        assert!(errors.contains_key("filename"));
    }

    #[test]
    fn lookups_take_the_first_non_empty_parameter() {
        assert_eq!(FileLookup::from_params(Some(""), Some("t"), Some("f")), Some(FileLookup::Tag("t".into())));
        assert_eq!(FileLookup::from_params(Some("s"), Some("t"), None), Some(FileLookup::Slug("s".into())));
        assert_eq!(FileLookup::from_params(Some(""), None, Some("")), None);
        assert_eq!(FileLookup::slug_or_tag(None, Some("t")), Some(FileLookup::Tag("t".into())));
    }
}
