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
/// trimmed. Anything else (or an empty token) is a missing key.
pub fn token_from_header(header: Option<&str>) -> Result<&str, AccessDenied> {
    let header = header.ok_or(AccessDenied::MissingToken)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("Token "))
        .ok_or(AccessDenied::MissingToken)?
        .trim();
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
        return if identity.projects.iter().any(|p| p == project) {
            Ok(())
        } else {
            Err(AccessDenied::Project)
        };
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
        let scope = RequestScope {
            account_id: Some("2"),
            project_slug: None,
            environment_slug: Some("dev123"),
        };
        assert_eq!(authorize(&id, scope), Err(AccessDenied::Account));
        let scope = RequestScope {
            account_id: None,
            project_slug: Some("other"),
            environment_slug: Some("dev123"),
        };
        assert_eq!(authorize(&id, scope), Err(AccessDenied::Project));
        let scope = RequestScope { environment_slug: Some("dev123"), ..Default::default() };
        assert_eq!(authorize(&id, scope), Ok(()));
        let scope = RequestScope { environment_slug: Some("prod"), ..Default::default() };
        assert_eq!(authorize(&id, scope), Err(AccessDenied::Environment));
        assert_eq!(authorize(&id, RequestScope::default()), Err(AccessDenied::NoScope));
    }

    #[test]
    fn messages_are_the_contracts() {
        assert_eq!(
            AccessDenied::Account.message(),
            "Invalid Account in Path. You have no accces to this account."
        );
        assert_eq!(
            AccessDenied::NoScope.message(),
            "Invalid Path. You requested a non-existent path."
        );
    }
}
