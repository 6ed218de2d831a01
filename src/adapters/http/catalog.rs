//! Accounts, projects and environments, answered alike by the v2 and v3 routes, and what
//! every dbt Cloud route shares: the scope check and the list envelope.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::document::Document;
use super::dto::{AccountDto, Envelope, EnvironmentDto, Extra, ListEnvelope, Pagination, ProjectDto, Status};
use super::error::ApiError;
use super::extract::Caller;
use super::params::{Count, Ints, Names, Text, filters, page};
use crate::app::Jade;
use crate::domain::Error;
use crate::domain::access::RequestScope;
use crate::domain::catalog::{EnvironmentFilter, ProjectFilter};
use crate::domain::paging::Listing;

pub type Answer<T> = Result<Document<Envelope<T>>, ApiError>;
pub type List<T> = Result<Document<ListEnvelope<T>>, ApiError>;

/// The account id in the path, once the caller may read it (the rule parses it).
pub fn account(caller: &Caller, account_id: &str) -> Result<i64, ApiError> {
    caller.authorize(RequestScope { account_id: Some(account_id), ..Default::default() })?;
    account_id.parse().map_err(|_| ApiError::from(Error::not_found()))
}

/// A path id that is not an integer names nothing.
pub fn id(value: &str) -> Result<i64, ApiError> {
    value.parse().map_err(|_| ApiError::from(Error::not_found()))
}

/// A page of a list in dbt Cloud's envelope.
pub fn listing<T, D: poem_openapi::types::ParseFromJSON + poem_openapi::types::ToJSON>(
    listing: Listing<T>,
    filters: BTreeMap<String, Value>,
    order_by: Option<String>,
    dto: impl Fn(T) -> D,
) -> Document<ListEnvelope<D>> {
    let data: Vec<D> = listing.items.into_iter().map(dto).collect();
    Document(ListEnvelope {
        extra: Extra {
            filters,
            order_by,
            pagination: Pagination { count: data.len() as u64, total_count: listing.total_count },
        },
        data,
        status: Status::ok(),
    })
}

fn text(value: &Option<String>) -> Option<Value> {
    value.as_ref().map(|v| json!(v))
}

pub async fn list_accounts(jade: &Jade, caller: &Caller, limit: &Count, offset: &Count) -> List<AccountDto> {
    let page = page(offset, limit);
    let accounts = jade.accounts(&caller.0, page).await?;
    Ok(listing(accounts, filters(None, page, &[]), None, AccountDto::from))
}

pub async fn get_account(jade: &Jade, caller: &Caller, account_id: &str) -> Answer<AccountDto> {
    let account_id = account(caller, account_id)?;
    Ok(Document(Envelope::ok(jade.account(account_id).await?.into())))
}

/// The query filters of a project list.
pub struct ProjectQuery<'a> {
    pub name_icontains: &'a Text,
    pub pk_in: &'a Ints,
    pub state: Option<i64>,
    pub limit: &'a Count,
    pub offset: &'a Count,
}

pub async fn list_projects(
    jade: &Jade,
    caller: &Caller,
    account_id: &str,
    query: ProjectQuery<'_>,
) -> List<ProjectDto> {
    let account_id = account(caller, account_id)?;
    let page = page(query.offset, query.limit);
    let filter = ProjectFilter {
        name_icontains: query.name_icontains.0.clone(),
        ids: query.pk_in.0.clone(),
        state: query.state,
    };
    let projects = jade.projects(account_id, &filter, page).await?;
    let applied = [
        ("name__icontains", text(&filter.name_icontains)),
        ("pk__in", filter.ids.as_ref().map(|v| json!(v))),
        ("state", filter.state.map(Value::from)),
    ];
    Ok(listing(projects, filters(Some(account_id), page, &applied), None, ProjectDto::from))
}

pub async fn get_project(jade: &Jade, caller: &Caller, account_id: &str, project_id: &str) -> Answer<ProjectDto> {
    let account_id = account(caller, account_id)?;
    Ok(Document(Envelope::ok(jade.project(account_id, id(project_id)?).await?.into())))
}

/// The query filters of an environment list.
pub struct EnvironmentQuery<'a> {
    pub project_id: Option<i64>,
    pub name_icontains: &'a Text,
    pub name: &'a Text,
    pub state: Option<i64>,
    pub dbt_cloud_type: &'a Text,
    pub deployment_type_in: &'a Names,
    pub limit: &'a Count,
    pub offset: &'a Count,
}

pub async fn list_environments(
    jade: &Jade,
    caller: &Caller,
    account_id: &str,
    query: EnvironmentQuery<'_>,
) -> List<EnvironmentDto> {
    let account_id = account(caller, account_id)?;
    list_environments_of(jade, account_id, query).await
}

/// An account's environments, the account already authorized.
pub async fn list_environments_of(jade: &Jade, account_id: i64, query: EnvironmentQuery<'_>) -> List<EnvironmentDto> {
    let page = page(query.offset, query.limit);
    let filter = EnvironmentFilter {
        project_id: query.project_id,
        name_icontains: query.name_icontains.0.clone(),
        name: query.name.0.clone(),
        state: query.state,
        dbt_cloud_type: query.dbt_cloud_type.0.clone(),
        deployment_types: query.deployment_type_in.0.clone(),
    };
    let environments = jade.environments(account_id, &filter, page).await?;
    let applied = [
        ("project_id", filter.project_id.map(Value::from)),
        ("name__icontains", text(&filter.name_icontains)),
        ("name", text(&filter.name)),
        ("state", filter.state.map(Value::from)),
        ("type", text(&filter.dbt_cloud_type)),
        ("deployment_type__in", filter.deployment_types.as_ref().map(|v| json!(v))),
    ];
    Ok(listing(environments, filters(Some(account_id), page, &applied), None, EnvironmentDto::from))
}
