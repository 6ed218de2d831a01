use async_trait::async_trait;
use deadpool_postgres::Pool;

use crate::domain::access::{self, GrantedEnvironment, GrantedProject, Grants, Identity};
use crate::ports::auth::{TokenVerifier, VerifyError};

/// Computes from the Datacoves tables what the Datacoves verify view answers (contract,
/// appendix A), without the round trip to the Datacoves API.
pub struct DatabaseVerifier {
    pool: Pool,
}

impl DatabaseVerifier {
    /// `pool` connects to the Datacoves database (read-only sessions suffice).
    pub fn new(pool: Pool) -> Self {
        DatabaseVerifier { pool }
    }
}

fn unavailable(error: impl std::fmt::Display) -> VerifyError {
    VerifyError::Unavailable(format!("Datacoves database: {error}"))
}

#[async_trait]
impl TokenVerifier for DatabaseVerifier {
    async fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let user = client
            .query_opt(
                "SELECT u.id, u.email, u.name FROM authtoken_token t JOIN users_user u ON u.id = t.user_id \
                 WHERE t.key = $1 AND u.deactivated_at IS NULL",
                &[&token],
            )
            .await
            .map_err(unavailable)?
            .ok_or(VerifyError::Invalid)?;
        let user_id: i64 = user.get(0);
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
        Ok(access::identity_from(Grants {
            email: user.get(1),
            name: user.get(2),
            permissions,
            accounts,
            projects,
            environments,
        }))
    }
}
