//! The dbt Cloud Administrative API v3 read routes dbt Cloud clients call (contract §3 "dbt
//! Cloud clients"): accounts, projects and environments, with the data, envelope and
//! authorization of their v2 counterparts.

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};

use super::ApiTags;
use super::catalog::{self, Answer, EnvironmentQuery, List, ProjectQuery, account, id};
use super::document::Document;
use super::dto::{AccountDto, Envelope, EnvironmentDto, ProjectDto};
use super::extract::Caller;
use super::params::{Count, Int, Ints, Names, PathId, Text};
use crate::app::Jade;
use crate::domain::Error;

pub struct V3Api {
    pub jade: Jade,
}

#[OpenApi(tag = "ApiTags::DbtApi")]
impl V3Api {
    /// The accounts the token may read.
    #[oai(path = "/accounts", method = "get", operation_id = "v3_list_accounts")]
    async fn list_accounts(
        &self,
        caller: Caller,
        /// At most this many accounts (default and most: 100).
        limit: Query<Count>,
        /// Skip this many accounts.
        offset: Query<Count>,
    ) -> List<AccountDto> {
        catalog::list_accounts(&self.jade, &caller, &limit, &offset).await
    }

    /// One account.
    #[oai(path = "/accounts/:account_id", method = "get", operation_id = "v3_get_account")]
    async fn get_account(&self, caller: Caller, account_id: Path<PathId>) -> Answer<AccountDto> {
        catalog::get_account(&self.jade, &caller, &account_id).await
    }

    /// The account's projects.
    #[oai(path = "/accounts/:account_id/projects", method = "get", operation_id = "v3_list_projects")]
    #[allow(clippy::too_many_arguments)]
    async fn list_projects(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        /// Only projects whose name contains this, ignoring case.
        #[oai(name = "name__icontains")]
        name_icontains: Query<Text>,
        /// Only these projects, e.g. `[1,2]`.
        #[oai(name = "pk__in")]
        pk_in: Query<Ints>,
        /// Only projects in this state (every project is active: 1).
        state: Query<Int>,
        /// At most this many projects (default and most: 100).
        limit: Query<Count>,
        /// Skip this many projects.
        offset: Query<Count>,
    ) -> List<ProjectDto> {
        let query = ProjectQuery {
            name_icontains: &name_icontains,
            pk_in: &pk_in,
            state: state.0.0,
            limit: &limit,
            offset: &offset,
        };
        catalog::list_projects(&self.jade, &caller, &account_id, query).await
    }

    /// One project of the account.
    #[oai(path = "/accounts/:account_id/projects/:project_id", method = "get", operation_id = "v3_get_project")]
    async fn get_project(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        project_id: Path<PathId>,
    ) -> Answer<ProjectDto> {
        catalog::get_project(&self.jade, &caller, &account_id, &project_id).await
    }

    /// The project's environments.
    #[oai(
        path = "/accounts/:account_id/projects/:project_id/environments",
        method = "get",
        operation_id = "v3_list_project_environments"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_project_environments(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        project_id: Path<PathId>,
        /// Only environments whose name contains this, ignoring case.
        #[oai(name = "name__icontains")]
        name_icontains: Query<Text>,
        /// Only the environment with exactly this name.
        name: Query<Text>,
        /// Only environments in this state (every environment is active: 1).
        state: Query<Int>,
        /// Only environments of this type: `development` or `deployment`.
        #[oai(name = "type")]
        dbt_cloud_type: Query<Text>,
        /// Only environments of these deployment types, e.g. `["production"]`.
        #[oai(name = "deployment_type__in")]
        deployment_type_in: Query<Names>,
        /// At most this many environments (default and most: 100).
        limit: Query<Count>,
        /// Skip this many environments.
        offset: Query<Count>,
    ) -> List<EnvironmentDto> {
        let account_id = account(&caller, &account_id)?;
        let project = self.jade.project(account_id, id(&project_id)?).await?;
        let query = EnvironmentQuery {
            project_id: Some(project.id),
            name_icontains: &name_icontains,
            name: &name,
            state: state.0.0,
            dbt_cloud_type: &dbt_cloud_type,
            deployment_type_in: &deployment_type_in,
            limit: &limit,
            offset: &offset,
        };
        catalog::list_environments_of(&self.jade, account_id, query).await
    }

    /// One environment of the project.
    #[oai(
        path = "/accounts/:account_id/projects/:project_id/environments/:environment_id",
        method = "get",
        operation_id = "v3_get_project_environment"
    )]
    async fn get_project_environment(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        project_id: Path<PathId>,
        environment_id: Path<PathId>,
    ) -> Answer<EnvironmentDto> {
        let account_id = account(&caller, &account_id)?;
        let project_id = id(&project_id)?;
        let environment = self.jade.environment(account_id, id(&environment_id)?).await?;
        if environment.project_id != project_id {
            return Err(Error::not_found().into());
        }
        Ok(Document(Envelope::ok(environment.into())))
    }

    /// The account's environments, across its projects.
    #[oai(path = "/accounts/:account_id/environments", method = "get", operation_id = "v3_list_environments")]
    #[allow(clippy::too_many_arguments)]
    async fn list_environments(
        &self,
        caller: Caller,
        account_id: Path<PathId>,
        /// Only this project's environments.
        project_id: Query<Int>,
        /// Only environments whose name contains this, ignoring case.
        #[oai(name = "name__icontains")]
        name_icontains: Query<Text>,
        /// Only the environment with exactly this name.
        name: Query<Text>,
        /// Only environments in this state (every environment is active: 1).
        state: Query<Int>,
        /// Only environments of this type: `development` or `deployment`.
        #[oai(name = "type")]
        dbt_cloud_type: Query<Text>,
        /// Only environments of these deployment types, e.g. `["production"]`.
        #[oai(name = "deployment_type__in")]
        deployment_type_in: Query<Names>,
        /// At most this many environments (default and most: 100).
        limit: Query<Count>,
        /// Skip this many environments.
        offset: Query<Count>,
    ) -> List<EnvironmentDto> {
        let query = EnvironmentQuery {
            project_id: project_id.0.0,
            name_icontains: &name_icontains,
            name: &name,
            state: state.0.0,
            dbt_cloud_type: &dbt_cloud_type,
            deployment_type_in: &deployment_type_in,
            limit: &limit,
            offset: &offset,
        };
        catalog::list_environments(&self.jade, &caller, &account_id, query).await
    }
}
