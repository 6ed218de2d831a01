//! Who a token belongs to and which paths it may use (contract §2).

use serde::{Deserialize, Serialize};

/// What the Datacoves verify service answers for a valid token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub account_ids: Vec<i64>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub project_ids: Vec<i64>,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub environment_ids: Vec<i64>,
    #[serde(default)]
    pub environments: Vec<String>,
}

/// The scope parameters a request carries, as sent (the account id is not parsed yet).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestScope<'a> {
    pub account_id: Option<&'a str>,
    pub project_slug: Option<&'a str>,
    pub environment_slug: Option<&'a str>,
}

/// Why a request is refused; each renders as 401 with its contract message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    #[error("Missing API Key. Please create a Bearer Token first.")]
    MissingToken,
    #[error("Invalid API Key. Please use a valid Bearer Token.")]
    InvalidToken,
    // The spelling `accces` is the first Jade's; clients match on it.
    #[error("Invalid Account in Path. You have no accces to this account.")]
    Account,
    #[error("Invalid Project in Path. You have no accces to this project.")]
    Project,
    #[error("Invalid Environment in Path. You have no accces to this environment.")]
    Environment,
    #[error("Invalid Path. You requested a non-existent path.")]
    NoScope,
}

impl AccessDenied {
    pub fn message(self) -> String {
        self.to_string()
    }
}

/// Extracts the token from an `Authorization` header value: `Bearer <t>` or `Token <t>`,
/// trimmed. A second prefix is dropped too (`Bearer Token <t>`, `Bearer Bearer <t>`): Swagger
/// UI adds `Bearer ` to whatever is pasted, and no token holds a space. Anything else (or an
/// empty token) is a missing key.
pub fn token_from_header(header: Option<&str>) -> Result<&str, AccessDenied> {
    fn strip(value: &str) -> Option<&str> {
        value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("Token ")).map(str::trim_start)
    }
    let token = strip(header.ok_or(AccessDenied::MissingToken)?).ok_or(AccessDenied::MissingToken)?;
    let token = strip(token).unwrap_or(token).trim();
    if token.is_empty() {
        return Err(AccessDenied::MissingToken);
    }
    Ok(token)
}

/// The path rules, first match wins: an account id in the path must parse as an integer in
/// `account_ids`; else a project slug must be in `projects`; else an environment slug must
/// be in `environments`; a request with none of them has no checkable scope.
pub fn authorize(identity: &Identity, scope: RequestScope<'_>) -> Result<(), AccessDenied> {
    if let Some(account_id) = scope.account_id {
        return match account_id.parse::<i64>() {
            Ok(id) if identity.account_ids.contains(&id) => Ok(()),
            _ => Err(AccessDenied::Account),
        };
    }
    if let Some(project) = scope.project_slug {
        return if identity.projects.iter().any(|p| p == project) { Ok(()) } else { Err(AccessDenied::Project) };
    }
    if let Some(environment) = scope.environment_slug {
        return if identity.environments.iter().any(|e| e == environment) {
            Ok(())
        } else {
            Err(AccessDenied::Environment)
        };
    }
    Err(AccessDenied::NoScope)
}

/// Whether the identity may run, cancel and retry the jobs of an environment: a `write`
/// permission on a resource that starts with `workbench:airflow`, scoped to the
/// environment's account, its project or the environment itself (permission names read
/// `scope|resource|action`, scopes `account[:project[:environment]]`; contract §3).
pub fn may_run_jobs(identity: &Identity, account: &str, project: &str, environment: &str) -> bool {
    let scopes = [account.to_owned(), format!("{account}:{project}"), format!("{account}:{project}:{environment}")];
    identity.permissions.iter().any(|name| {
        let mut parts = name.split('|');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(scope), Some(resource), Some("write"), None) => {
                resource.starts_with("workbench:airflow") && scopes.iter().any(|s| s == scope)
            }
            _ => false,
        }
    })
}

/// Facts the Datacoves verify view starts from (contract, appendix A).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub email: Option<String>,
    pub name: Option<String>,
    /// Names of the permissions granted to the user directly or through its groups.
    pub permissions: Vec<String>,
    /// Active accounts with an extended group among the user's groups: (id, slug).
    pub accounts: Vec<(i64, String)>,
    /// Projects whose slug is in [`workbench_scopes`]' projects or that have an environment
    /// whose slug is in its environments.
    pub projects: Vec<GrantedProject>,
    /// Environments whose slug is in [`workbench_scopes`]' environments or whose project's
    /// slug is in its projects.
    pub environments: Vec<GrantedEnvironment>,
}

#[derive(Debug, Clone)]
pub struct GrantedProject {
    pub id: i64,
    pub slug: String,
    pub account_slug: String,
}

#[derive(Debug, Clone)]
pub struct GrantedEnvironment {
    pub id: i64,
    pub slug: String,
    pub project_slug: String,
    pub account_slug: String,
}

/// The scope of a permission name `scope|resource|action`: `account[:project[:environment]]`.
fn scope(permission: &str) -> Vec<&str> {
    permission.split('|').next().unwrap_or_default().split(':').collect()
}

/// The project and environment slugs of the user's workbench permissions (appendix A, step
/// 3): (projects, environments).
pub fn workbench_scopes(permissions: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut projects, mut environments) = (Vec::new(), Vec::new());
    for permission in permissions.iter().filter(|p| p.to_lowercase().contains("|workbench:")) {
        match scope(permission)[..] {
            [_, _, environment] => environments.push(environment.to_owned()),
            [_, project] => projects.push(project.to_owned()),
            _ => {}
        }
    }
    projects.sort();
    projects.dedup();
    environments.sort();
    environments.dedup();
    (projects, environments)
}

/// What the Datacoves verify view answers (appendix A, steps 4 to 6): the accounts,
/// projects and environments the user may write to.
pub fn identity_from(grants: Grants) -> Identity {
    let (mut account_perms, mut project_perms, mut environment_perms) = (Vec::new(), Vec::new(), Vec::new());
    for permission in &grants.permissions {
        if permission.rsplit('|').next() != Some("write") {
            continue;
        }
        match scope(permission)[..] {
            [account] => account_perms.push(account),
            [_, project] => project_perms.push(project),
            [_, _, environment] => environment_perms.push(environment),
            _ => {}
        }
    }
    let has = |list: &[&str], slug: &str| list.contains(&slug);
    let projects: Vec<&GrantedProject> = grants
        .projects
        .iter()
        .filter(|p| {
            has(&account_perms, &p.account_slug)
                || has(&project_perms, &p.slug)
                || grants.environments.iter().any(|e| has(&environment_perms, &e.slug) && e.project_slug == p.slug)
        })
        .collect();
    let environments: Vec<&GrantedEnvironment> = grants
        .environments
        .iter()
        .filter(|e| {
            has(&account_perms, &e.account_slug)
                || has(&project_perms, &e.project_slug)
                || has(&environment_perms, &e.slug)
        })
        .collect();
    let accounts: Vec<&(i64, String)> = grants
        .accounts
        .iter()
        .filter(|(_, slug)| {
            has(&account_perms, slug)
                || (!projects.is_empty() && grants.projects.iter().any(|p| &p.account_slug == slug))
                || (!environments.is_empty() && grants.environments.iter().any(|e| &e.account_slug == slug))
        })
        .collect();
    Identity {
        account_ids: accounts.iter().map(|(id, _)| *id).collect(),
        accounts: accounts.iter().map(|(_, slug)| slug.clone()).collect(),
        project_ids: projects.iter().map(|p| p.id).collect(),
        projects: projects.iter().map(|p| p.slug.clone()).collect(),
        environment_ids: environments.iter().map(|e| e.id).collect(),
        environments: environments.iter().map(|e| e.slug.clone()).collect(),
        email: grants.email,
        name: grants.name,
        permissions: grants.permissions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            account_ids: vec![1, 7],
            projects: vec!["analytics".into()],
            environments: vec!["dev123".into()],
            ..Identity::default()
        }
    }

    #[test]
    fn token_is_read_from_bearer_or_token_header_and_trimmed() {
        assert_eq!(token_from_header(Some("Bearer abc ")), Ok("abc"));
        assert_eq!(token_from_header(Some("Token  abc")), Ok("abc"));
        assert_eq!(token_from_header(None), Err(AccessDenied::MissingToken));
        assert_eq!(token_from_header(Some("Basic abc")), Err(AccessDenied::MissingToken));
        assert_eq!(token_from_header(Some("Bearer   ")), Err(AccessDenied::MissingToken));
        assert_eq!(token_from_header(Some("bearer abc")), Err(AccessDenied::MissingToken));
    }

    #[test]
    fn a_token_pasted_with_its_prefix_into_swagger_ui_still_counts() {
        assert_eq!(token_from_header(Some("Bearer Token abc")), Ok("abc"));
        assert_eq!(token_from_header(Some("Bearer Bearer abc")), Ok("abc"));
        assert_eq!(token_from_header(Some("Token Bearer  abc ")), Ok("abc"));
        assert_eq!(token_from_header(Some("Bearer Token ")), Err(AccessDenied::MissingToken));
        assert_eq!(token_from_header(Some("Bearer Tokenabc")), Ok("Tokenabc"));
    }

    #[test]
    fn account_in_path_must_be_an_integer_the_token_holds() {
        let id = identity();
        let scope = |a| RequestScope { account_id: Some(a), ..Default::default() };
        assert_eq!(authorize(&id, scope("7")), Ok(()));
        assert_eq!(authorize(&id, scope("2")), Err(AccessDenied::Account));
        assert_eq!(authorize(&id, scope("7abc")), Err(AccessDenied::Account));
    }

    #[test]
    fn first_matching_rule_wins() {
        let id = identity();
        // The account rule decides even when the environment would pass.
        let scope = RequestScope { account_id: Some("2"), project_slug: None, environment_slug: Some("dev123") };
        assert_eq!(authorize(&id, scope), Err(AccessDenied::Account));
        let scope = RequestScope { account_id: None, project_slug: Some("other"), environment_slug: Some("dev123") };
        assert_eq!(authorize(&id, scope), Err(AccessDenied::Project));
        let scope = RequestScope { environment_slug: Some("dev123"), ..Default::default() };
        assert_eq!(authorize(&id, scope), Ok(()));
        let scope = RequestScope { environment_slug: Some("prod"), ..Default::default() };
        assert_eq!(authorize(&id, scope), Err(AccessDenied::Environment));
        assert_eq!(authorize(&id, RequestScope::default()), Err(AccessDenied::NoScope));
    }

    fn project(id: i64, slug: &str, account: &str) -> GrantedProject {
        GrantedProject { id, slug: slug.into(), account_slug: account.into() }
    }

    fn environment(id: i64, slug: &str, project: &str, account: &str) -> GrantedEnvironment {
        GrantedEnvironment { id, slug: slug.into(), project_slug: project.into(), account_slug: account.into() }
    }

    #[test]
    fn workbench_permissions_name_the_candidate_projects_and_environments() {
        let permissions = vec![
            "acme:analytics|workbench:airflow|read".to_owned(),
            "acme:analytics:dev1|workbench:dbt-docs|read".to_owned(),
            "acme:other:prod|dbt-api:manifest|write".to_owned(),
        ];
        assert_eq!(workbench_scopes(&permissions), (vec!["analytics".into()], vec!["dev1".into()]));
    }

    #[test]
    fn only_write_permissions_grant_access() {
        let grants = Grants {
            permissions: vec![
                "acme:analytics:dev1|dbt-api:manifest|write".into(),
                "acme:analytics:dev2|dbt-api:manifest|read".into(),
                "acme:analytics|workbench:airflow|read".into(),
            ],
            accounts: vec![(1, "acme".into()), (2, "other".into())],
            projects: vec![project(10, "analytics", "acme")],
            environments: vec![
                environment(100, "dev1", "analytics", "acme"),
                environment(101, "dev2", "analytics", "acme"),
            ],
            ..Grants::default()
        };
        let identity = identity_from(grants);
        assert_eq!(identity.environments, vec!["dev1"]);
        assert_eq!(identity.environment_ids, vec![100]);
        // The project holds a writable environment; the account owns granted projects.
        assert_eq!(identity.projects, vec!["analytics"]);
        assert_eq!(identity.account_ids, vec![1]);
        assert_eq!(identity.permissions.len(), 3);
    }

    #[test]
    fn account_and_project_write_permissions_cover_what_they_contain() {
        let grants = Grants {
            permissions: vec!["acme|admin:users|write".into()],
            accounts: vec![(1, "acme".into())],
            projects: vec![project(10, "analytics", "acme")],
            environments: vec![environment(100, "dev1", "analytics", "acme")],
            ..Grants::default()
        };
        let identity = identity_from(grants.clone());
        assert_eq!(
            (identity.account_ids, identity.project_ids, identity.environment_ids),
            (vec![1], vec![10], vec![100])
        );
        let none = identity_from(Grants { permissions: vec!["acme|admin:users|read".into()], ..grants });
        assert!(none.account_ids.is_empty() && none.projects.is_empty() && none.environments.is_empty());
    }

    #[test]
    fn messages_are_the_contracts() {
        assert_eq!(AccessDenied::Account.message(), "Invalid Account in Path. You have no accces to this account.");
        assert_eq!(AccessDenied::NoScope.message(), "Invalid Path. You requested a non-existent path.");
    }

    #[test]
    fn running_jobs_needs_an_airflow_write_permission_on_the_environment() {
        let with = |permissions: &[&str]| Identity {
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            ..Identity::default()
        };
        let may = |identity: &Identity| may_run_jobs(identity, "acme", "analytics", "dev123");
        for granted in [
            "acme|workbench:airflow|write",
            "acme:analytics|workbench:airflow|write",
            "acme:analytics:dev123|workbench:airflow:dags|write",
        ] {
            assert!(may(&with(&[granted])), "{granted}");
        }
        for refused in [
            "acme:analytics|workbench:airflow|read",
            "acme:analytics|dbt-api:manifest|write",
            "acme:marketing|workbench:airflow|write",
            "acme:analytics:prod123|workbench:airflow|write",
            "globex|workbench:airflow|write",
            "acme:analytics|workbench:airbyte|write",
            "acme:analytics|workbench:airflow|write|extra",
        ] {
            assert!(!may(&with(&[refused])), "{refused}");
        }
        assert!(!may(&Identity::default()));
    }
}
