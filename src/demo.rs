//! `jade demo`: the whole API over in-memory adapters and local-disk storage, seeded with
//! two accounts, their projects and environments, DAGs with runs in every state, a
//! manifest uploaded for a run, and files.

use std::sync::Arc;

use chrono::{Duration, Utc};

use crate::adapters::memory::{
    MemoryAirflow, MemoryCatalog, MemoryFileStore, MemoryManifestStore, MemoryRegistry, MemoryVerifier, SystemClock,
};
use crate::app::{FileUpload, Jade, ManifestUpload, Ports, Settings, Spooled};
use crate::domain::access::Identity;
use crate::domain::catalog::{Account, AirflowDatabase, Environment, Project};
use crate::domain::job::Dag;
use crate::domain::job_run::{DagRun, TaskInstance};
use crate::ports::clock::Clock;
use crate::ports::storage::BlobStorage;

/// A seeded demo: the service, a token per account, and where its files are stored.
pub struct Demo {
    pub jade: Jade,
    /// (account id, account name, token)
    pub tokens: Vec<(i64, String, String)>,
    /// The storage root; removed when the demo is dropped.
    pub storage_dir: tempfile::TempDir,
}

struct Seed {
    account: (i64, &'static str, &'static str),
    projects: &'static [(i64, &'static str, &'static str)],
    /// (id, project id, slug, name, Airflow enabled)
    environments: &'static [(i64, i64, &'static str, &'static str, bool)],
}

const SEEDS: [Seed; 2] = [
    Seed {
        account: (1, "Acme Analytics", "acme"),
        projects: &[(1, "analytics", "Analytics"), (2, "marketing", "Marketing")],
        environments: &[
            (1, 1, "acme-dev", "Development", true),
            (2, 1, "acme-prod", "Production", true),
            (3, 2, "acme-mkt", "Marketing", false),
        ],
    },
    Seed {
        account: (2, "Globex", "globex"),
        projects: &[(3, "globex-dbt", "Globex dbt")],
        environments: &[(4, 3, "globex-prod", "Production", true)],
    },
];

const DAGS: [(&str, &str, bool); 3] = [
    ("daily_refresh", "Rebuilds the warehouse every morning", true),
    ("hourly_sync", "Loads new source rows", true),
    ("weekly_docs", "Publishes dbt docs (paused)", false),
];

/// Builds and seeds the demo. Storage is local disk under a fresh temporary directory.
pub async fn build(settings: Settings) -> Result<Demo, String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let catalog = Arc::new(MemoryCatalog::default());
    // Runs triggered in the demo go on by themselves: queued, running, then success.
    let airflow = Arc::new(MemoryAirflow::running(std::time::Duration::from_secs(3)));
    let verifier = Arc::new(MemoryVerifier::default());
    let storage_dir = tempfile::Builder::new().prefix("jade-demo-").tempdir().map_err(|e| e.to_string())?;
    let storage = demo_storage(storage_dir.path())?;

    let mut tokens = Vec::new();
    for seed in &SEEDS {
        let (account_id, name, slug) = seed.account;
        catalog.add_account(Account {
            id: account_id,
            name: Some(name.into()),
            slug: Some(slug.into()),
            developer_licenses: Some(10),
            plan_id: Some(1),
            trial_ends_at: None,
            created_at: Some(now - Duration::days(400)),
            updated_at: Some(now - Duration::days(3)),
        });
        for &(id, slug, name) in seed.projects {
            catalog.add_project(Project {
                id,
                account_id,
                name: Some(name.into()),
                slug: slug.into(),
                repository_id: Some(id as i32),
                created_at: Some(now - Duration::days(300)),
                updated_at: Some(now - Duration::days(10)),
            });
        }
        for &(id, project_id, slug, name, airflow_enabled) in seed.environments {
            catalog.add_environment(Environment {
                id,
                account_id,
                project_id,
                name: Some(name.into()),
                slug: slug.into(),
                dbt_home_path: Some("transform".into()),
                kind: Some(if slug.ends_with("-prod") { "prod" } else { "dev" }.into()),
                created_at: Some(now - Duration::days(200)),
                updated_at: Some(now - Duration::days(1)),
                airflow: airflow_enabled.then_some(AirflowDatabase::InCluster),
                airflow_api: Default::default(),
            });
            if airflow_enabled {
                seed_airflow(&airflow, id, now);
            }
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        verifier.insert(
            token.clone(),
            Identity {
                email: Some(format!("admin@{slug}.example")),
                name: Some(format!("{name} admin")),
                permissions: vec![format!("{slug}|dbt-api:manifest|write"), format!("{slug}|workbench:airflow|write")],
                account_ids: vec![account_id],
                accounts: vec![slug.into()],
                project_ids: seed.projects.iter().map(|p| p.0).collect(),
                projects: seed.projects.iter().map(|p| p.1.into()).collect(),
                environment_ids: seed.environments.iter().map(|e| e.0).collect(),
                environments: seed.environments.iter().map(|e| e.2.into()).collect(),
            },
        );
        tokens.push((account_id, name.to_owned(), token));
    }

    let registry = Arc::new(MemoryRegistry::default());
    let ports = Ports {
        catalog,
        airflow: Some(airflow.clone()),
        control: Some(airflow),
        registry: registry.clone(),
        run_index: registry,
        manifests: Arc::new(MemoryManifestStore::new(clock.clone())),
        files: Arc::new(MemoryFileStore::new(clock.clone())),
        storage,
        verifier,
        clock,
    };
    let jade = Jade::new(ports, settings);
    seed_uploads(&jade).await?;
    Ok(Demo { jade, tokens, storage_dir })
}

fn demo_storage(root: &std::path::Path) -> Result<Arc<dyn BlobStorage>, String> {
    #[cfg(feature = "storage-fs")]
    {
        Ok(Arc::new(crate::adapters::storage::fs::FsStorage::new(root).map_err(|e| e.to_string())?))
    }
    #[cfg(not(feature = "storage-fs"))]
    {
        let _ = root;
        Ok(Arc::new(crate::adapters::memory::MemoryStorage::default()))
    }
}

/// Three DAGs and runs in every state, the newest first queued minutes ago.
fn seed_airflow(airflow: &MemoryAirflow, environment_id: i64, now: chrono::DateTime<Utc>) {
    for (dag_id, description, active) in DAGS {
        airflow.add_dag(
            environment_id,
            Dag {
                dag_id: dag_id.into(),
                description: Some(description.into()),
                is_active: Some(active),
                last_parsed_time: Some(now - Duration::minutes(7)),
                schedule: Some(if dag_id == "hourly_sync" { "\"@hourly\"" } else { "\"0 6 * * *\"" }.into()),
                is_paused: None,
            },
        );
    }
    let states = ["success", "success", "failed", "success", "up_for_retry", "success", "failed", "running", "queued"];
    for (n, state) in states.iter().enumerate() {
        let n = n as i64;
        let dag_id = DAGS[(n % 2) as usize].0;
        let queued = now - Duration::hours(2 * (states.len() as i64 - n)) - Duration::minutes(environment_id);
        let started =
            matches!(*state, "success" | "failed" | "running" | "up_for_retry").then(|| queued + Duration::seconds(12));
        let ended = matches!(*state, "success" | "failed").then(|| queued + Duration::seconds(12 + 95 + 40 * n));
        let run_id = format!("scheduled__{}", queued.format("%Y-%m-%dT%H:%M:%S%.6f+00:00"));
        airflow.add_run(
            environment_id,
            DagRun {
                id: n + 1,
                dag_id: dag_id.into(),
                run_id: Some(run_id.clone()),
                state: Some((*state).into()),
                queued_at: Some(queued),
                created_at: None,
                start_date: started,
                end_date: ended,
                run_type: Some("manual".into()),
                note: None,
            },
        );
        // Its steps (`include_related=run_steps`): dbt deps, then dbt build, which decides
        // how the run ends.
        for (task_id, step) in [("dbt_deps", 0), ("dbt_build", 1)] {
            let start =
                started.filter(|_| step == 0 || *state != "up_for_retry").map(|s| s + Duration::seconds(20 * step));
            let (task_state, end) = match (*state, step) {
                (_, 0) if start.is_some() => ("success", start.map(|s| s + Duration::seconds(15))),
                ("success" | "failed", _) => (*state, ended),
                ("running", _) => ("running", None),
                _ => ("queued", None),
            };
            airflow.add_task_instance(
                environment_id,
                TaskInstance {
                    dag_id: dag_id.into(),
                    run_id: run_id.clone(),
                    task_id: task_id.into(),
                    map_index: -1,
                    state: Some(task_state.into()),
                    start_date: start,
                    end_date: end,
                },
            );
        }
    }
}

/// `body` spooled as an upload is (a manifest trimmed as it is written).
async fn spooled(jade: &Jade, body: &[u8], filename: &str, manifest: bool) -> Result<Spooled, String> {
    let mut writer = jade.spool_writer(manifest).map_err(|e| e.to_string())?;
    writer.write(bytes::Bytes::copy_from_slice(body)).await.map_err(|e| e.to_string())?;
    writer.finish(Some(filename.into())).await.map_err(|e| e.to_string())
}

/// A manifest for the first successful run of `acme-prod` and a tagged one for `acme-dev`,
/// and two files.
async fn seed_uploads(jade: &Jade) -> Result<(), String> {
    let manifest = serde_json::json!({
        "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v10.json", "dbt_version": "1.6.9",
                     "project_name": "analytics", "adapter_type": "snowflake"},
        "nodes": {
            "model.analytics.orders": {"name": "orders", "resource_type": "model", "path": "marts/orders.sql",
                                        "config": {"materialized": "table"}, "tags": ["daily"]},
            "model.analytics.customers": {"name": "customers", "resource_type": "model", "path": "marts/customers.sql",
                                           "config": {"materialized": "view"}, "tags": []}
        },
        "sources": {"source.analytics.raw.orders": {"name": "orders"}},
        "macros": {},
        "parent_map": {"model.analytics.orders": ["source.analytics.raw.orders"]}
    })
    .to_string();
    let runs = jade
        .runs(1, &Default::default(), Default::default(), Default::default(), Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let run = runs
        .items
        .iter()
        .find(|r| r.environment.slug == "acme-prod" && r.dag_run.state.as_deref() == Some("success"))
        .ok_or("the demo seeds a successful run")?;
    jade.upload_manifest(ManifestUpload {
        environment_slug: "acme-prod".into(),
        dag_id: Some(run.dag_run.dag_id.clone()),
        run_id: run.dag_run.run_id.clone(),
        tag: None,
        file: Some(spooled(jade, manifest.as_bytes(), "manifest.json", true).await?),
    })
    .await
    .map_err(|e| e.to_string())?;
    jade.upload_manifest(ManifestUpload {
        environment_slug: "acme-dev".into(),
        dag_id: None,
        run_id: None,
        tag: Some("release-1.0".into()),
        file: Some(spooled(jade, manifest.as_bytes(), "manifest.json", true).await?),
    })
    .await
    .map_err(|e| e.to_string())?;
    jade.create_files(
        "acme-dev",
        vec![
            FileUpload {
                tag: Some("settings".into()),
                file: Some(spooled(jade, br#"{"threads": 8, "target": "dev"}"#, "settings.json", false).await?),
            },
            FileUpload {
                tag: Some("notes".into()),
                file: Some(spooled(jade, b"Rebuild marts after 6am.", "notes.txt", false).await?),
            },
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}
