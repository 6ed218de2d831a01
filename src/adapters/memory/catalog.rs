use std::sync::RwLock;

use async_trait::async_trait;

use crate::domain::catalog::{Account, Environment, Project};
use crate::ports::BackendError;
use crate::ports::catalog::Catalog;

#[derive(Default)]
pub struct MemoryCatalog {
    data: RwLock<Data>,
}

#[derive(Default)]
struct Data {
    accounts: Vec<Account>,
    projects: Vec<Project>,
    environments: Vec<Environment>,
}

impl MemoryCatalog {
    pub fn add_account(&self, account: Account) {
        let mut data = self.data.write().unwrap();
        data.accounts.push(account);
        data.accounts.sort_by_key(|a| a.id);
    }

    pub fn add_project(&self, project: Project) {
        let mut data = self.data.write().unwrap();
        data.projects.push(project);
        data.projects.sort_by_key(|p| p.id);
    }

    pub fn add_environment(&self, environment: Environment) {
        let mut data = self.data.write().unwrap();
        data.environments.push(environment);
        data.environments.sort_by_key(|e| e.id);
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn account(&self, id: i64) -> Result<Option<Account>, BackendError> {
        Ok(self.data.read().unwrap().accounts.iter().find(|a| a.id == id).cloned())
    }

    async fn accounts(&self, ids: &[i64]) -> Result<Vec<Account>, BackendError> {
        Ok(self.data.read().unwrap().accounts.iter().filter(|a| ids.contains(&a.id)).cloned().collect())
    }

    async fn projects(&self, account_id: i64) -> Result<Vec<Project>, BackendError> {
        Ok(self.data.read().unwrap().projects.iter().filter(|p| p.account_id == account_id).cloned().collect())
    }

    async fn project(&self, account_id: i64, id: i64) -> Result<Option<Project>, BackendError> {
        Ok(self.projects(account_id).await?.into_iter().find(|p| p.id == id))
    }

    async fn project_by_slug(&self, slug: &str) -> Result<Option<Project>, BackendError> {
        Ok(self.data.read().unwrap().projects.iter().find(|p| p.slug == slug).cloned())
    }

    async fn environments(&self, account_id: i64) -> Result<Vec<Environment>, BackendError> {
        Ok(self.data.read().unwrap().environments.iter().filter(|e| e.account_id == account_id).cloned().collect())
    }

    async fn environment(&self, account_id: i64, id: i64) -> Result<Option<Environment>, BackendError> {
        Ok(self.environments(account_id).await?.into_iter().find(|e| e.id == id))
    }

    async fn environment_by_slug(&self, slug: &str) -> Result<Option<Environment>, BackendError> {
        Ok(self.data.read().unwrap().environments.iter().find(|e| e.slug == slug).cloned())
    }
}
