//! Accounts, projects and environments (contract §3), read from the Datacoves catalog.

use super::{Jade, backend};
use crate::domain::Error;
use crate::domain::access::Identity;
use crate::domain::catalog::{Account, Environment, EnvironmentFilter, Project, ProjectFilter};
use crate::domain::paging::{Listing, Page};

impl Jade {
    /// The accounts the token may read.
    pub async fn accounts(&self, identity: &Identity, page: Page) -> Result<Listing<Account>, Error> {
        let accounts = self.ports.catalog.accounts(&identity.account_ids).await.map_err(backend)?;
        Ok(Listing::paged(accounts, page))
    }

    pub async fn account(&self, id: i64) -> Result<Account, Error> {
        self.ports.catalog.account(id).await.map_err(backend)?.ok_or_else(Error::not_found)
    }

    pub async fn projects(
        &self,
        account_id: i64,
        filter: &ProjectFilter,
        page: Page,
    ) -> Result<Listing<Project>, Error> {
        let mut projects = self.ports.catalog.projects(account_id).await.map_err(backend)?;
        projects.retain(|p| filter.matches(p));
        Ok(Listing::paged(projects, page))
    }

    pub async fn project(&self, account_id: i64, id: i64) -> Result<Project, Error> {
        self.ports.catalog.project(account_id, id).await.map_err(backend)?.ok_or_else(Error::not_found)
    }

    pub async fn environments(
        &self,
        account_id: i64,
        filter: &EnvironmentFilter,
        page: Page,
    ) -> Result<Listing<Environment>, Error> {
        let mut environments = self.ports.catalog.environments(account_id).await.map_err(backend)?;
        environments.retain(|e| filter.matches(e));
        Ok(Listing::paged(environments, page))
    }

    pub async fn environment(&self, account_id: i64, id: i64) -> Result<Environment, Error> {
        self.ports.catalog.environment(account_id, id).await.map_err(backend)?.ok_or_else(Error::not_found)
    }

    pub(super) async fn environment_by_slug(&self, slug: &str) -> Result<Environment, Error> {
        self.ports.catalog.environment_by_slug(slug).await.map_err(backend)?.ok_or_else(Error::not_found)
    }
}
