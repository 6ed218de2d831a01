use async_trait::async_trait;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::domain::access::{self, GrantedEnvironment, GrantedProject, Grants, Identity};
use crate::ports::auth::{TokenVerifier, VerifyError};

/// Computes from the Datacoves tables what the Datacoves verify view answers (contract,
/// appendix A), without the round trip to the Datacoves API.
pub struct DatabaseVerifier {
    pool: crate::adapters::pg::Database,
}

impl DatabaseVerifier {
    /// `pool` connects to the Datacoves database (read-only sessions suffice). Give the
    /// verifier a pool of its own (`AUTH_POOL_SIZE`), so a flood of made-up tokens cannot
    /// take the connections the catalog reads need.
    pub fn new(pool: crate::adapters::pg::Database) -> Self {
        DatabaseVerifier { pool }
    }
}

/// Errors from PostgreSQL name no parameter, so the token never reaches the log line.
fn unavailable(error: impl std::error::Error) -> VerifyError {
    VerifyError::Unavailable(format!("Datacoves database: {}", crate::adapters::error_chain(&error)))
}

/// How many characters of a knox token are stored in clear as `token_key`
/// (`knox.settings.CONSTANTS.TOKEN_KEY_LENGTH`).
const TOKEN_KEY_LENGTH: usize = 15;

/// The token's first 15 characters (Unicode scalar values, as Python slices a `str`), or
/// `None` for a token knox could never have accepted: one holding a control character
/// (PostgreSQL refuses NUL in text; the HTTP layer lets no other through) or ASCII
/// whitespace (knox splits the header on it).
fn token_key(token: &str) -> Option<&str> {
    if token.is_empty() || token.chars().any(|c| c.is_control() || c.is_ascii_whitespace()) {
        return None;
    }
    let end = token.char_indices().nth(TOKEN_KEY_LENGTH).map_or(token.len(), |(index, _)| index);
    Some(&token[..end])
}

/// knox's `hash_token`: the lowercase hex SHA-512 of the token's UTF-8 bytes.
fn digest(token: &str) -> String {
    Sha512::digest(token.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The knox row a token is: among the unexpired rows sharing its `token_key`, the one whose
/// digest equals the token's (compared in constant time). Answers the user's id, email and
/// name; a deactivated user's token is invalid.
async fn token_user(
    client: &crate::adapters::pg::Client,
    token: &str,
) -> Result<(i64, Option<String>, Option<String>), VerifyError> {
    let key = token_key(token).ok_or(VerifyError::Invalid)?;
    let digest = digest(token);
    let rows = client
        .query(
            "SELECT t.digest, u.id, u.email, u.name, u.deactivated_at IS NOT NULL \
             FROM iam_datacovestoken t JOIN users_user u ON u.id = t.user_id \
             WHERE t.token_key = $1 AND (t.expiry IS NULL OR t.expiry >= now())",
            &[&key],
        )
        .await
        .map_err(unavailable)?;
    // Every row is compared, so the time taken does not tell which one matched.
    let mut found = None;
    for row in &rows {
        let stored: &str = row.get(0);
        if bool::from(stored.as_bytes().ct_eq(digest.as_bytes())) {
            found = Some(row);
        }
    }
    match found {
        Some(row) if !row.get::<_, bool>(4) => Ok((row.get(1), row.get(2), row.get(3))),
        _ => Err(VerifyError::Invalid),
    }
}

#[async_trait]
impl TokenVerifier for DatabaseVerifier {
    async fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        // A token knox could never have accepted costs no connection.
        token_key(token).ok_or(VerifyError::Invalid)?;
        let client = self.pool.client().await.map_err(unavailable)?;
        let (user_id, email, name) = token_user(&client, token).await?;
        let permissions: Vec<String> = client
            .query(
                "SELECT DISTINCT p.name FROM auth_permission p \
                 WHERE p.name IS NOT NULL AND ( \
                   p.id IN (SELECT permission_id FROM users_user_user_permissions WHERE user_id = $1) \
                   OR p.id IN (SELECT gp.permission_id FROM auth_group_permissions gp \
                               JOIN users_user_groups ug ON ug.group_id = gp.group_id WHERE ug.user_id = $1)) \
                 ORDER BY p.name",
                &[&user_id],
            )
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let accounts = client
            .query(
                "SELECT DISTINCT a.id, a.slug FROM users_account a \
                 JOIN users_extendedgroup eg ON eg.account_id = a.id \
                 JOIN users_user_groups ug ON ug.group_id = eg.group_id \
                 WHERE ug.user_id = $1 AND a.deactivated_at IS NULL ORDER BY a.id",
                &[&user_id],
            )
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| (row.get(0), row.get::<_, Option<String>>(1).unwrap_or_default()))
            .collect();
        let (project_slugs, environment_slugs) = access::workbench_scopes(&permissions);
        let projects = client
            .query(
                "SELECT DISTINCT p.id, p.slug, a.slug FROM projects_project p \
                 JOIN users_account a ON a.id = p.account_id \
                 LEFT JOIN projects_environment e ON e.project_id = p.id \
                 WHERE p.slug = ANY($1) OR e.slug = ANY($2) ORDER BY p.id",
                &[&project_slugs, &environment_slugs],
            )
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| GrantedProject {
                id: row.get(0),
                slug: row.get::<_, Option<String>>(1).unwrap_or_default(),
                account_slug: row.get::<_, Option<String>>(2).unwrap_or_default(),
            })
            .collect();
        let environments = client
            .query(
                "SELECT e.id, e.slug, p.slug, a.slug FROM projects_environment e \
                 JOIN projects_project p ON p.id = e.project_id \
                 JOIN users_account a ON a.id = p.account_id \
                 WHERE e.slug = ANY($2) OR p.slug = ANY($1) ORDER BY e.id",
                &[&project_slugs, &environment_slugs],
            )
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| GrantedEnvironment {
                id: row.get(0),
                slug: row.get::<_, Option<String>>(1).unwrap_or_default(),
                project_slug: row.get::<_, Option<String>>(2).unwrap_or_default(),
                account_slug: row.get::<_, Option<String>>(3).unwrap_or_default(),
            })
            .collect();
        Ok(access::identity_from(Grants { email, name, permissions, accounts, projects, environments }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_key_is_the_first_fifteen_characters_as_python_slices_them() {
        let knox = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(token_key(knox), Some("0123456789abcde"));
        assert_eq!(token_key("short"), Some("short"));
        assert_eq!(token_key("ééééééééééééééééé"), Some("ééééééééééééééé"));
        assert_eq!(token_key("日本語のトークンは十五文字より長いです"), Some("日本語のトークンは十五文字より"));
        assert_eq!(token_key(&"x".repeat(100_000)).map(str::len), Some(15));
    }

    #[test]
    fn tokens_knox_could_never_accept_have_no_key() {
        for token in ["", "abc\0def", "\0", "abc\u{1}", "tab\there", "new\nline", "sp ace", "del\u{7f}", "c1\u{85}"] {
            assert_eq!(token_key(token), None, "{token:?}");
        }
    }

    #[test]
    fn the_digest_is_knoxs_lowercase_hex_sha512_of_the_utf8_bytes() {
        // hashlib.sha512("abc".encode()).hexdigest()
        assert_eq!(
            digest("abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(digest("é").len(), 128);
        assert_ne!(digest("é"), digest("\u{e9}\u{301}"));
    }
}
