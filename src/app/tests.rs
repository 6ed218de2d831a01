//! The use cases over the in-memory adapters.

use std::io::Write;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use futures::StreamExt;

use super::*;
use crate::adapters::memory::*;
use crate::domain::access::Identity;
use crate::domain::catalog::{Account, AirflowDatabase, Environment, Project, Timestamp};
use crate::domain::file::FileLookup;
use crate::domain::job::Dag;
use crate::domain::job_run::RunStatus;
use crate::domain::job_run::{DagRun, IndexedRun};
use crate::domain::manifest::ManifestError;
use crate::domain::paging::{Page, RunOrder};
use crate::domain::run_request::RunRequest;
use crate::ports::manifests::ManifestQuery;
use crate::ports::registry::{IdRegistry, RunKey};
use crate::ports::storage::Blob;

struct Fixture {
    jade: Jade,
    airflow: Arc<MemoryAirflow>,
    storage: Arc<MemoryStorage>,
    registry: Arc<MemoryRegistry>,
}

fn at(minutes: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn environment(id: i64, account_id: i64, project_id: i64) -> Environment {
    Environment {
        id,
        account_id,
        project_id,
        name: Some(format!("Env {id}")),
        slug: format!("env{id}"),
        dbt_home_path: None,
        kind: Some("dev".into()),
        created_at: None,
        updated_at: None,
        airflow: Some(AirflowDatabase::InCluster),
        airflow_api: Default::default(),
    }
}

/// Account 1 with project 10 (environments 100, 101) and project 11 (environment 102);
/// account 2 with project 20 (environment 200). Each environment of account 1 has DAGs
/// `a` and `b` and `runs` runs alternating between them.
fn fixture(runs: i64) -> Fixture {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(at(100_000)));
    let catalog = Arc::new(MemoryCatalog::default());
    let airflow = Arc::new(MemoryAirflow::default());
    let storage = Arc::new(MemoryStorage::default());
    for account in [1, 2] {
        catalog.add_account(Account {
            id: account,
            name: Some(format!("Account {account}")),
            slug: Some(format!("account{account}")),
            developer_licenses: None,
            plan_id: None,
            trial_ends_at: None,
            created_at: None,
            updated_at: None,
        });
    }
    for (id, account_id) in [(10, 1), (11, 1), (20, 2)] {
        catalog.add_project(Project {
            id,
            account_id,
            name: None,
            slug: format!("project{id}"),
            repository_id: None,
            created_at: None,
            updated_at: None,
        });
    }
    for (id, account_id, project_id) in [(100, 1, 10), (101, 1, 10), (102, 1, 11), (200, 2, 20)] {
        catalog.add_environment(environment(id, account_id, project_id));
        for dag_id in ["a", "b"] {
            airflow.add_dag(
                id,
                Dag {
                    dag_id: dag_id.into(),
                    description: None,
                    is_active: Some(true),
                    last_parsed_time: Some(at(0)),
                    schedule: None,
                    is_paused: None,
                },
            );
        }
        if account_id == 1 {
            for n in 1..=runs {
                let state = ["success", "failed", "running", "queued", "up_for_retry"][(n % 5) as usize];
                airflow.add_run(
                    id,
                    DagRun {
                        id: n,
                        dag_id: if n % 2 == 0 { "a".into() } else { "b".into() },
                        run_id: Some(format!("manual__{n}")),
                        state: Some(state.into()),
                        queued_at: Some(at(n * 10 + id)),
                        created_at: None,
                        start_date: Some(at(n * 10 + id + 1)),
                        end_date: (state == "success" || state == "failed").then(|| at(n * 10 + id + 5)),
                        run_type: None,
                        note: None,
                    },
                );
            }
        }
    }
    let registry = Arc::new(MemoryRegistry::default());
    let ports = Ports {
        catalog,
        airflow: Some(airflow.clone()),
        control: Some(airflow.clone()),
        registry: registry.clone(),
        run_index: registry.clone(),
        manifests: Arc::new(MemoryManifestStore::new(clock.clone())),
        files: Arc::new(MemoryFileStore::new(clock.clone())),
        storage: storage.clone(),
        verifier: Arc::new(MemoryVerifier::default()),
        clock,
    };
    let settings = Settings { run_index_refresh: std::time::Duration::ZERO, ..Settings::default() };
    Fixture { jade: Jade::new(ports, settings), airflow, storage, registry }
}

fn spooled(body: &[u8], filename: &str) -> Spooled {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(body).unwrap();
    Spooled { len: body.len() as u64, path: file.into_temp_path(), filename: Some(filename.into()), trimmed: None }
}

async fn read(blob: Blob) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = blob.body;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    body
}

async fn walk(jade: &Jade, filter: &RunFilter, order: &str, limit: u64) -> (Vec<JobRun>, Vec<u64>) {
    let order = RunOrder::parse(order).unwrap();
    let (mut runs, mut totals) = (Vec::new(), Vec::new());
    loop {
        let page = Page::new(Some(runs.len() as u64), Some(limit));
        let listing = jade.runs(1, filter, order, page, Embed::default()).await.unwrap();
        totals.push(listing.total_count);
        if listing.items.is_empty() {
            return (runs, totals);
        }
        runs.extend(listing.items);
    }
}

use crate::domain::job_run::JobRun;

#[tokio::test]
async fn paging_yields_every_run_once_in_order_across_environments() {
    let f = fixture(12);
    for order in ["id", "-id", "created_at", "-created_at", "finished_at", "-finished_at"] {
        let (runs, totals) = walk(&f.jade, &RunFilter::default(), order, 7).await;
        assert_eq!(runs.len(), 36, "order {order}");
        assert!(totals.iter().all(|t| *t == 36), "order {order}: {totals:?}");
        let mut keys: Vec<(i64, i64)> = runs.iter().map(|r| (r.environment.id, r.dag_run.id)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 36, "order {order}: a run came twice");
        let parsed = RunOrder::parse(order).unwrap();
        for pair in runs.windows(2) {
            let (a, b) = (IndexedRun::from(&pair[0].dag_run), IndexedRun::from(&pair[1].dag_run));
            let ordering = crate::domain::job_run::compare(parsed, (&a, pair[0].id), (&b, pair[1].id));
            assert_eq!(ordering, std::cmp::Ordering::Less, "order {order}: {} before {}", pair[0].id, pair[1].id);
        }
    }
}

/// Checks a walk through every page: each run once, in the order asked.
fn assert_exact(runs: &[JobRun], expected: usize, order: &str) {
    let mut keys: Vec<(i64, i64)> = runs.iter().map(|r| (r.environment.id, r.dag_run.id)).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!((runs.len(), keys.len()), (expected, expected), "order {order}");
    let parsed = RunOrder::parse(order).unwrap();
    for pair in runs.windows(2) {
        let (a, b) = (IndexedRun::from(&pair[0].dag_run), IndexedRun::from(&pair[1].dag_run));
        let ordering = crate::domain::job_run::compare(parsed, (&a, pair[0].id), (&b, pair[1].id));
        assert_eq!(ordering, std::cmp::Ordering::Less, "order {order}: {} before {}", pair[0].id, pair[1].id);
    }
}

const ORDERS: [&str; 6] = ["id", "-id", "created_at", "-created_at", "finished_at", "-finished_at"];

#[tokio::test]
async fn paging_is_exact_when_ids_were_handed_out_in_no_order() {
    let f = fixture(8);
    // As a registry adopted from the first Jade: ids given newest run first, environments mixed.
    let mut keys: Vec<RunKey> = [100, 101, 102]
        .into_iter()
        .flat_map(|environment_id| (1..=8).map(move |dag_run_id| RunKey { environment_id, dag_run_id }))
        .collect();
    keys.sort_by_key(|k| (std::cmp::Reverse(k.dag_run_id), k.environment_id % 2, k.environment_id));
    for key in &keys {
        f.registry.run_ids(std::slice::from_ref(key)).await.unwrap();
    }
    for order in ORDERS {
        assert_exact(&walk(&f.jade, &RunFilter::default(), order, 2).await.0, 24, order);
    }
}

#[tokio::test]
async fn paging_is_exact_after_latest_run_and_a_late_committed_run() {
    let f = fixture(6);
    // latest-run registers the newest successful run before any list does.
    f.jade.latest_run(1, 10).await.unwrap();
    assert_exact(&walk(&f.jade, &RunFilter::default(), "id", 2).await.0, 18, "id");
    // A DAG run committed late: its id was taken before one that is already indexed.
    let run = |id: i64, run_id: &str| DagRun {
        id,
        dag_id: "a".into(),
        run_id: Some(run_id.into()),
        state: Some("success".into()),
        queued_at: Some(at(1)),
        created_at: None,
        start_date: Some(at(2)),
        end_date: Some(at(3)),
        run_type: None,
        note: None,
    };
    let late = f.airflow.next_run_id(100);
    f.airflow.add_run(100, run(late + 1, "early"));
    assert_exact(&walk(&f.jade, &RunFilter::default(), "id", 2).await.0, 19, "id");
    f.airflow.add_run(100, run(late, "late"));
    for order in ORDERS {
        let runs = walk(&f.jade, &RunFilter::default(), order, 4).await.0;
        assert_exact(&runs, 20, order);
        assert!(runs.iter().any(|r| r.dag_run.run_id.as_deref() == Some("late")), "order {order}");
    }
}

#[tokio::test]
async fn a_huge_offset_answers_an_empty_page_with_the_total() {
    let f = fixture(3);
    let listing = f
        .jade
        .runs(1, &RunFilter::default(), RunOrder::default(), Page::new(Some(1_000_000_000), None), Embed::default())
        .await
        .unwrap();
    assert!(listing.items.is_empty());
    assert_eq!(listing.total_count, 9);
}

#[tokio::test]
async fn newest_run_first_with_minus_id_includes_runs_added_later() {
    let f = fixture(3);
    let newest = |jade: Jade| async move {
        let listing = jade
            .runs(1, &RunFilter::default(), RunOrder::parse("-id").unwrap(), Page::new(None, Some(1)), Embed::default())
            .await
            .unwrap();
        listing.items[0].clone()
    };
    let before = newest(f.jade.clone()).await;
    let id = f.airflow.next_run_id(101);
    f.airflow.add_run(
        101,
        DagRun {
            id,
            dag_id: "a".into(),
            run_id: Some("late".into()),
            state: None,
            queued_at: None,
            created_at: None,
            start_date: None,
            end_date: None,
            run_type: None,
            note: None,
        },
    );
    let after = newest(f.jade.clone()).await;
    assert!(after.id > before.id);
    assert_eq!((after.environment.id, after.dag_run.id), (101, id));
    assert_eq!(after.dag_run.run_id.as_deref(), Some("late"));
}

#[tokio::test]
async fn filters_select_runs_by_status_job_project_and_environment() {
    let f = fixture(10);
    let all = |filter: RunFilter| {
        let jade = f.jade.clone();
        async move { walk(&jade, &filter, "id", 100).await.0 }
    };
    let success = all(RunFilter { statuses: Some(vec![1]), ..Default::default() }).await;
    assert_eq!(success.len(), 6);
    assert!(success.iter().all(|r| r.dag_run.state.as_deref() == Some("success")));
    // Queued (3) covers every state that is not success, failed or running.
    let queued = all(RunFilter { statuses: Some(vec![3]), ..Default::default() }).await;
    assert_eq!(queued.len(), 12);
    let none = all(RunFilter { statuses: Some(vec![42]), ..Default::default() }).await;
    assert!(none.is_empty());
    let project = all(RunFilter { project_ids: Some(vec![11]), ..Default::default() }).await;
    assert!(project.len() == 10 && project.iter().all(|r| r.environment.id == 102));
    let environment = all(RunFilter { environment_id: Some(101), ..Default::default() }).await;
    assert!(environment.len() == 10 && environment.iter().all(|r| r.environment.id == 101));
    let job_id = environment.iter().find(|r| r.dag_run.dag_id == "a").unwrap().job_id;
    let job = all(RunFilter { job_definition_ids: Some(vec![job_id]), ..Default::default() }).await;
    assert_eq!(job.len(), 5);
    assert!(job.iter().all(|r| r.job_id == job_id && r.environment.id == 101));
    let unknown_job = all(RunFilter { job_definition_ids: Some(vec![999_999]), ..Default::default() }).await;
    assert!(unknown_job.is_empty());
}

#[tokio::test]
async fn an_unreachable_environment_is_left_out_of_lists_and_404s_on_lookup() {
    let f = fixture(4);
    let listing = f
        .jade
        .runs(1, &RunFilter::default(), RunOrder::default(), Page::new(None, None), Embed::default())
        .await
        .unwrap();
    let in_101 = listing.items.iter().find(|r| r.environment.id == 101).unwrap().id;
    f.airflow.set_unreachable(101, true);
    let listing = f
        .jade
        .runs(1, &RunFilter::default(), RunOrder::default(), Page::new(None, None), Embed::default())
        .await
        .unwrap();
    assert_eq!(listing.total_count, 8);
    assert!(listing.items.iter().all(|r| r.environment.id != 101));
    let jobs = f.jade.jobs(1, &JobFilter::default(), Default::default(), Page::default()).await.unwrap();
    assert_eq!(jobs.total_count, 4);
    assert_eq!(
        f.jade.run(1, in_101, Embed::default()).await.unwrap_err(),
        Error::not_found_with("Airflow Repo for Environment env101 not found.")
    );
}

#[tokio::test]
async fn another_accounts_ids_are_not_found() {
    let f = fixture(2);
    let listing = f
        .jade
        .runs(
            1,
            &RunFilter::default(),
            RunOrder::default(),
            Page::new(None, None),
            Embed { job: true, run_steps: false },
        )
        .await
        .unwrap();
    let run = &listing.items[0];
    assert_eq!(run.job.as_ref().unwrap().id, run.job_id);
    assert_eq!(f.jade.run(2, run.id, Embed::default()).await.unwrap_err(), Error::not_found());
    assert_eq!(f.jade.job(2, run.job_id).await.unwrap_err(), Error::not_found());
    assert_eq!(f.jade.environment(2, 100).await.unwrap_err(), Error::not_found());
    assert_eq!(f.jade.project(2, 10).await.unwrap_err(), Error::not_found());
    assert_eq!(f.jade.latest_run(2, 10).await.unwrap_err(), Error::not_found());
}

#[tokio::test]
async fn a_job_shows_its_latest_and_latest_successful_runs() {
    let f = fixture(10);
    let jobs = f
        .jade
        .jobs(1, &JobFilter { environment_id: Some(100), ..Default::default() }, Default::default(), Page::default())
        .await
        .unwrap();
    let a = jobs.items.iter().find(|j| j.dag.dag_id == "a").unwrap();
    let job = f.jade.job(1, a.id).await.unwrap();
    // Runs of `a` are the even ones; 10 is success... n%5: 10 -> success, 8 -> queued, 6 -> failed.
    let recent = job.most_recent_run.unwrap();
    assert_eq!(recent.dag_run.id, 10);
    assert_eq!(job.most_recent_completed_run.unwrap().dag_run.id, 10);
    assert_eq!(recent.job_id, a.id);
    let latest = f.jade.latest_run(1, 10).await.unwrap();
    assert_eq!(latest.dag_run.state.as_deref(), Some("success"));
    assert_eq!((latest.environment.id, latest.dag_run.id), (101, 10));
}

#[tokio::test]
async fn a_manifest_for_a_run_is_stored_whole_and_trimmed_and_marks_the_run() {
    let f = fixture(3);
    let body = br#"{"metadata": {"v": 1}, "nodes": {"n": 1}, "macros": {}}"#;
    let upload = ManifestUpload {
        environment_slug: "env100".into(),
        dag_id: Some("a".into()),
        run_id: Some("manual__2".into()),
        tag: Some("release".into()),
        file: Some(spooled(body, "manifest.json")),
    };
    let manifest = f.jade.upload_manifest(upload).await.unwrap();
    assert_eq!(manifest.key(), "accounts/1/environments/env100/dags/a/dag_runs/manual--2/manifest.json");
    assert_eq!(f.storage.keys(), vec![manifest.key(), manifest.trimmed_key()],);
    let query = ManifestQuery::Dag { environment_slug: "env100".into(), dag_id: "a".into() };
    assert_eq!(read(f.jade.manifest(&query, false).await.unwrap()).await, body);
    assert_eq!(read(f.jade.manifest(&query, true).await.unwrap()).await, br#"{"metadata":{"v": 1},"nodes":{"n": 1}}"#);
    let run = f.jade.run(1, manifest.job_run_id.unwrap(), Embed::default()).await.unwrap();
    assert_eq!(run.artifact_path, Some(manifest.key()));
    assert_eq!(read(f.jade.artifact(1, run.id, "manifest.json").await.unwrap()).await, body);
    assert_eq!(f.jade.artifact(1, run.id, "run_results.json").await.unwrap_err(), Error::not_found());
    assert_eq!(f.jade.artifact(2, run.id, "manifest.json").await.unwrap_err(), Error::not_found());
    // Another environment's DAG of the same name has no manifest (no cross-tenant reads).
    let other = ManifestQuery::Dag { environment_slug: "env101".into(), dag_id: "a".into() };
    assert_eq!(f.jade.manifest(&other, true).await.unwrap_err(), Error::not_found());
}

#[tokio::test]
async fn refused_manifests_leave_nothing_behind() {
    let f = fixture(1);
    let upload = |body: &[u8], tag: Option<&str>, run: Option<(&str, &str)>| ManifestUpload {
        environment_slug: "env100".into(),
        dag_id: run.map(|r| r.0.to_owned()),
        run_id: run.map(|r| r.1.to_owned()),
        tag: tag.map(str::to_owned),
        file: Some(spooled(body, "manifest.json")),
    };
    let Err(Error::Invalid(errors)) = f.jade.upload_manifest(upload(b"nope", None, None)).await else { panic!() };
    assert!(errors["file"][0].starts_with("is not valid JSON"));
    assert_eq!(
        f.jade.upload_manifest(upload(b"{}", None, Some(("a", "missing")))).await.unwrap_err(),
        Error::not_found()
    );
    f.storage.set_failing(true);
    assert_eq!(
        f.jade.upload_manifest(upload(b"{}", Some("t"), None)).await.unwrap_err(),
        Error::Unprocessable("File upload failed. Please check the error in the logs.".into())
    );
    f.storage.set_failing(false);
    // The trimmed body failing after the full one was written: both are removed.
    f.storage.fail_puts_containing(Some("trimmed"));
    assert!(f.jade.upload_manifest(upload(b"{}", Some("t"), None)).await.is_err());
    f.storage.fail_puts_containing(None);
    assert!(f.storage.keys().is_empty(), "{:?}", f.storage.keys());
    let query = ManifestQuery::Environment { environment_slug: "env100".into() };
    assert_eq!(f.jade.manifest(&query, true).await.unwrap_err(), Error::not_found());

    f.jade.upload_manifest(upload(b"{}", Some("t"), None)).await.unwrap();
    assert_eq!(
        f.jade.upload_manifest(upload(b"{}", Some("t"), None)).await.unwrap_err(),
        Error::invalid("tag", "has already been taken")
    );
    assert_eq!(f.storage.keys().len(), 2);
}

#[tokio::test]
async fn a_failed_multi_upload_stores_none_of_its_files() {
    let f = fixture(0);
    let uploads = || {
        vec![
            FileUpload { tag: Some("one".into()), file: Some(spooled(b"{\"a\":1}", "one.json")) },
            FileUpload { tag: Some("two".into()), file: Some(spooled(b"plain", "two.txt")) },
        ]
    };
    f.storage.fail_puts_containing(Some("two"));
    assert!(matches!(f.jade.create_files("env100", uploads()).await, Err(Error::Unprocessable(_))));
    assert!(f.storage.keys().is_empty());
    let lookup = Some(FileLookup::Tag("one".into()));
    assert_eq!(f.jade.file("env100", lookup.clone()).await.unwrap_err(), Error::not_found());
    f.storage.fail_puts_containing(None);

    let files = f.jade.create_files("env100", uploads()).await.unwrap();
    assert_eq!(files[1].path, "/environments/env100/files/two/two.txt");
    let one = f.jade.file("env100", lookup).await.unwrap();
    assert!(one.is_json);
    let two = f.jade.file("env100", Some(FileLookup::Filename("two.txt".into()))).await.unwrap();
    assert!(!two.is_json);
    assert_eq!(std::fs::read(&two.contents.path).unwrap(), b"plain");
    assert_eq!(f.jade.file("env100", None).await.unwrap_err(), Error::BadRequest(LOOKUP_REQUIRED_FOR_TESTS.into()));
}

const LOOKUP_REQUIRED_FOR_TESTS: &str = "Give the file's slug, tag or filename as a query parameter.";

#[tokio::test]
async fn files_update_and_delete_keep_rows_and_bodies_together() {
    let f = fixture(0);
    let created = f
        .jade
        .create_files("env100", vec![FileUpload { tag: Some("cfg".into()), file: Some(spooled(b"1", "a.json")) }])
        .await
        .unwrap()
        .remove(0);
    let by_slug = Some(FileLookup::Slug(created.slug.to_string()));
    let updated = f.jade.update_file("env100", by_slug.clone(), Some(spooled(b"2", "b.json")), None).await.unwrap();
    assert!(updated.is_json);
    let updated = updated.file;
    assert_eq!(updated.path, "/environments/env100/files/cfg/b.json");
    // The old body went with the old filename; the new one is under a fresh key.
    assert_eq!(f.storage.keys(), vec![updated.key.clone()]);
    assert!(updated.key.starts_with("/environments/env100/file-versions/cfg/b.json/"), "{}", updated.key);

    f.storage.set_failing(true);
    assert_eq!(
        f.jade.delete_file("env100", by_slug.clone()).await.unwrap_err(),
        Error::Unprocessable("Deletion of file contents from storage failed. File record and contents remain.".into())
    );
    f.storage.set_failing(false);
    assert!(f.jade.file("env100", by_slug.clone()).await.is_ok());
    f.jade.delete_file("env100", by_slug.clone()).await.unwrap();
    assert_eq!(f.jade.file("env100", by_slug).await.unwrap_err(), Error::not_found());
    assert!(f.storage.keys().is_empty());
    // Another environment cannot reach a file by its tag.
    f.jade
        .create_files("env100", vec![FileUpload { tag: Some("x".into()), file: Some(spooled(b"1", "x")) }])
        .await
        .unwrap();
    assert_eq!(f.jade.file("env101", Some(FileLookup::Tag("x".into()))).await.unwrap_err(), Error::not_found());
}

#[tokio::test]
async fn a_new_tag_moves_the_body_or_changes_nothing() {
    let f = fixture(0);
    let created = f
        .jade
        .create_files("env100", vec![FileUpload { tag: Some("old".into()), file: Some(spooled(b"1", "a.json")) }])
        .await
        .unwrap()
        .remove(0);
    let by_slug = Some(FileLookup::Slug(created.slug.to_string()));
    // The new path cannot be written: the file stays as it was, nothing is left behind.
    f.storage.fail_puts_containing(Some("/new/"));
    for upload in [None, Some(spooled(b"2", "b.json"))] {
        assert!(f.jade.update_file("env100", by_slug.clone(), upload, Some("new".into())).await.is_err());
        assert_eq!(f.storage.keys(), vec![created.key.clone()]);
        assert_eq!(f.jade.file("env100", by_slug.clone()).await.unwrap().file.tag, "old");
    }
    f.storage.fail_puts_containing(None);
    let moved = f.jade.update_file("env100", by_slug.clone(), None, Some("new".into())).await.unwrap();
    assert_eq!((moved.file.tag.as_str(), moved.file.path.as_str()), ("new", "/environments/env100/files/new/a.json"));
    assert_eq!(std::fs::read(&moved.contents.path).unwrap(), b"1");
    assert_eq!(f.storage.keys(), vec![moved.file.key.clone()]);
    // The same tag again is no rename; without a file there is nothing to do.
    assert_eq!(
        f.jade.update_file("env100", by_slug, None, Some("new".into())).await.unwrap_err(),
        Error::invalid("file", "can't be blank")
    );
}

#[tokio::test]
async fn a_row_without_its_body_answers_the_contract_message() {
    let f = fixture(0);
    let file = f
        .jade
        .create_files("env100", vec![FileUpload { tag: Some("t".into()), file: Some(spooled(b"1", "a")) }])
        .await
        .unwrap()
        .remove(0);
    f.storage.delete(&file.key).await.unwrap();
    assert_eq!(
        f.jade.file("env100", Some(FileLookup::Tag("t".into()))).await.unwrap_err(),
        Error::not_found_with("File found but could not download contents from storage bucket.")
    );
    f.storage.set_failing(true);
    assert_eq!(
        f.jade.file("env100", Some(FileLookup::Tag("t".into()))).await.unwrap_err(),
        Error::Unprocessable("The request to the storage bucket failed.".into())
    );
}

#[tokio::test]
async fn airflow_off_means_empty_lists() {
    let f = fixture(3);
    let mut ports = f.jade.ports.clone();
    ports.airflow = None;
    let jade = Jade::new(ports, Settings::default());
    let listing = jade
        .runs(1, &RunFilter::default(), RunOrder::default(), Page::new(None, None), Embed::default())
        .await
        .unwrap();
    assert_eq!((listing.items.len(), listing.total_count), (0, 0));
    assert_eq!(jade.jobs(1, &JobFilter::default(), Default::default(), Page::default()).await.unwrap().total_count, 0);
}

#[tokio::test]
async fn runs_filter_on_created_and_finished_ranges() {
    use crate::domain::paging::TimeRange;
    let f = fixture(10);
    let list = |filter: RunFilter| {
        let jade = f.jade.clone();
        async move { jade.runs(1, &filter, RunOrder::default(), Page::new(None, None), Embed::default()).await.unwrap() }
    };
    // Environment 100: run n queued at minute 10n + 100, ended at 10n + 105 when finished.
    let range = TimeRange { from: at(130), to: at(160) };
    let created = list(RunFilter { environment_id: Some(100), created_at: Some(range), ..Default::default() }).await;
    let queued: Vec<i64> = created.items.iter().map(|r| r.dag_run.id).collect();
    assert_eq!((queued, created.total_count), (vec![3, 4, 5, 6], 4));
    // Of those, 5 (success) and 6 (failed) finished by minute 160; 10 and 11 ended later.
    let finished = list(RunFilter { environment_id: Some(100), finished_at: Some(range), ..Default::default() }).await;
    let ended: Vec<i64> = finished.items.iter().map(|r| r.dag_run.id).collect();
    assert_eq!(ended, vec![5]);
    let both = list(RunFilter {
        created_at: Some(range),
        finished_at: Some(TimeRange { from: at(0), to: at(1000) }),
        ..Default::default()
    })
    .await;
    assert!(both.items.iter().all(|r| r.dag_run.end_date.is_some() && range.contains(r.dag_run.queued_at)));
}

#[tokio::test]
async fn lists_filter_as_dbt_cloud_names_it() {
    use crate::domain::catalog::{EnvironmentFilter, ProjectFilter};
    let f = fixture(2);
    let environments = |filter: EnvironmentFilter| {
        let jade = f.jade.clone();
        async move {
            let listing = jade.environments(1, &filter, Page::new(None, None)).await.unwrap();
            listing.items.iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(environments(EnvironmentFilter { project_id: Some(10), ..Default::default() }).await, vec![100, 101]);
    assert_eq!(
        environments(EnvironmentFilter { name_icontains: Some("v 102".into()), ..Default::default() }).await,
        vec![102]
    );
    let picked = ProjectFilter { ids: Some(vec![11, 20]), ..Default::default() };
    let projects = f.jade.projects(1, &picked, Page::new(None, None));
    assert_eq!(projects.await.unwrap().items.iter().map(|p| p.id).collect::<Vec<_>>(), vec![11]);
    let page = f.jade.projects(1, &ProjectFilter::default(), Page::new(Some(1), Some(1))).await.unwrap();
    assert_eq!((page.items.len(), page.total_count), (1, 2));

    let jobs = |filter: JobFilter| {
        let jade = f.jade.clone();
        async move { jade.jobs(1, &filter, Default::default(), Page::new(None, None)).await.unwrap() }
    };
    let named =
        jobs(JobFilter { name_icontains: Some("A".into()), project_ids: Some(vec![10]), ..Default::default() }).await;
    assert_eq!(named.total_count, 2);
    assert!(named.items.iter().all(|j| j.dag.dag_id == "a" && j.environment.project_id == 10));
    assert_eq!(jobs(JobFilter { state: Some(1), ..Default::default() }).await.total_count, 6);
    assert_eq!(jobs(JobFilter { state: Some(2), ..Default::default() }).await.total_count, 0);
    assert_eq!(jobs(JobFilter { project_ids: Some(vec![]), ..Default::default() }).await.total_count, 0);
}

#[tokio::test]
async fn a_failed_multi_upload_leaves_every_stored_file_as_it_was() {
    let f = fixture(0);
    let upload =
        |tag: &str, body: &[u8], name: &str| FileUpload { tag: Some(tag.into()), file: Some(spooled(body, name)) };
    let kept = f.jade.create_files("env100", vec![upload("cfg", b"\"old\"", "a.json")]).await.unwrap().remove(0);
    f.storage.fail_puts_containing(Some("/second/"));
    let failed = f
        .jade
        .create_files("env100", vec![upload("cfg", b"\"new\"", "a.json"), upload("second", b"2", "b.json")])
        .await;
    assert_eq!(
        failed.unwrap_err(),
        Error::Unprocessable("File upload failed. Please check the error in the logs.".into())
    );
    assert_eq!(f.storage.keys(), vec![kept.key.clone()], "only the stored file's body remains");
    let read = f.jade.file("env100", Some(FileLookup::Tag("cfg".into()))).await.unwrap();
    assert_eq!((read.file.id, std::fs::read(&read.contents.path).unwrap()), (kept.id, b"\"old\"".to_vec()));

    // Succeeding, the new version's body replaces the old one for every row of the path.
    f.storage.fail_puts_containing(None);
    let new = f.jade.create_files("env100", vec![upload("cfg", b"\"new\"", "a.json")]).await.unwrap().remove(0);
    assert_eq!(f.storage.keys(), vec![new.key.clone()]);
    let old_version = f.jade.file("env100", Some(FileLookup::Slug(kept.slug.to_string()))).await.unwrap();
    assert_eq!(
        (old_version.file.key, std::fs::read(&old_version.contents.path).unwrap()),
        (new.key, b"\"new\"".to_vec())
    );
}

#[tokio::test]
async fn readiness_names_the_part_that_fails_and_turns_off_at_shutdown() {
    let f = fixture(0);
    let ready = f.jade.readiness().await;
    assert!(ready.is_ready(), "{ready:?}");
    f.storage.set_failing(true);
    let failing = f.jade.readiness().await;
    assert_eq!((failing.jade_db, failing.datacoves_db, failing.storage), (Part::Ok, Part::Ok, Part::Unavailable));
    assert!(!failing.is_ready());
    f.storage.set_failing(false);
    f.jade.begin_shutdown();
    let stopping = f.jade.readiness().await;
    assert!(stopping.shutting_down && !stopping.is_ready(), "{stopping:?}");
    assert!(f.jade.finish_undo(std::time::Duration::from_secs(1)).await, "no undo pending");
}

#[tokio::test]
async fn uploads_beyond_the_bound_wait_and_all_succeed() {
    let mut f = fixture(0);
    f.jade = Jade::new(f.jade.ports.clone(), Settings { max_concurrent_uploads: 2, ..Settings::default() });
    let uploads = (0..10).map(|n| {
        let jade = f.jade.clone();
        async move {
            let upload = FileUpload { tag: Some(format!("t{n}")), file: Some(spooled(b"1", "a.json")) };
            jade.create_files("env100", vec![upload]).await
        }
    });
    let results = futures::future::join_all(uploads).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(f.storage.keys().len(), 10);
    assert_eq!(f.jade.uploads.available_permits(), 2);
}

/// Storage whose puts of keys containing `stall` never finish (and say they started).
struct Stalling {
    inner: Arc<MemoryStorage>,
    stall: std::sync::Mutex<&'static str>,
    started: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl crate::ports::storage::BlobStorage for Stalling {
    async fn put(
        &self,
        key: &str,
        source: crate::ports::storage::BlobSource,
    ) -> Result<(), crate::ports::storage::StorageError> {
        let stall = *self.stall.lock().unwrap();
        if key.contains(stall) {
            self.started.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.put(key, source).await
    }
    async fn get(&self, key: &str) -> Result<Blob, crate::ports::storage::StorageError> {
        self.inner.get(key).await
    }
    async fn stat(&self, key: &str) -> Result<crate::ports::storage::Stat, crate::ports::storage::StorageError> {
        self.inner.stat(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), crate::ports::storage::StorageError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, crate::ports::storage::StorageError> {
        self.inner.list(prefix).await
    }
    async fn ping(&self) -> Result<(), crate::ports::storage::StorageError> {
        self.inner.ping().await
    }
    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[tokio::test]
async fn an_upload_cut_off_mid_way_is_undone_by_a_task_of_its_own() {
    let f = fixture(0);
    let stalling = Arc::new(Stalling {
        inner: f.storage.clone(),
        stall: std::sync::Mutex::new("/stall/"),
        started: Default::default(),
    });
    let ports = Ports { storage: stalling.clone(), ..f.jade.ports.clone() };
    let jade = Jade::new(ports.clone(), Settings::default());
    let upload =
        |tag: &str, body: &[u8], name: &str| FileUpload { tag: Some(tag.into()), file: Some(spooled(body, name)) };
    let kept = jade.create_files("env100", vec![upload("cfg", b"\"old\"", "a.json")]).await.unwrap().remove(0);

    // The first body (replacing `cfg`) is stored, the second never finishes: the request is
    // dropped (its client went away).
    let cut = tokio::spawn({
        let jade = jade.clone();
        let uploads = vec![upload("cfg", b"\"new\"", "a.json"), upload("stall", b"2", "b.json")];
        async move { jade.create_files("env100", uploads).await }
    });
    stalling.started.notified().await;
    assert_eq!(f.storage.keys().len(), 2, "the first new body is stored");
    cut.abort();
    assert!(cut.await.unwrap_err().is_cancelled());
    assert!(jade.finish_undo(std::time::Duration::from_secs(5)).await, "the undo ran");
    assert_eq!(f.storage.keys(), vec![kept.key.clone()], "the new body is gone, the stored one kept");
    let read_back = jade.file("env100", Some(FileLookup::Tag("cfg".into()))).await.unwrap();
    assert_eq!(std::fs::read(&read_back.contents.path).unwrap(), b"\"old\"");
    assert_eq!(jade.file("env100", Some(FileLookup::Tag("stall".into()))).await.unwrap_err(), Error::not_found());

    // A manifest: its full body stored, its trimmed one never.
    *stalling.stall.lock().unwrap() = "trimmed";
    let jade = Jade::new(ports, Settings::default());
    let cut = tokio::spawn({
        let jade = jade.clone();
        let upload = ManifestUpload {
            environment_slug: "env100".into(),
            dag_id: None,
            run_id: None,
            tag: Some("cut".into()),
            file: Some(spooled(br#"{"metadata": {}, "nodes": {}}"#, "manifest.json")),
        };
        async move { jade.upload_manifest(upload).await }
    });
    stalling.started.notified().await;
    // Both bodies are stored at once: the full one may still be on its way when the trimmed
    // one stalls.
    for _ in 0..500 {
        if f.storage.keys().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(f.storage.keys().len(), 2, "the full body is stored");
    cut.abort();
    let _ = cut.await;
    assert!(jade.finish_undo(std::time::Duration::from_secs(5)).await);
    assert_eq!(f.storage.keys(), vec![kept.key.clone()]);
    let query = ManifestQuery::Tag { environment_slug: "env100".into(), tag: "cut".into() };
    assert_eq!(jade.manifest(&query, false).await.unwrap_err(), Error::not_found());
}

/// Spools `body` in chunks of `size` through a writer that trims it as a manifest.
async fn spooled_trimming(jade: &Jade, body: &[u8], size: usize) -> Spooled {
    let mut writer = jade.spool_writer(true).unwrap();
    for chunk in body.chunks(size) {
        writer.write(bytes::Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    writer.finish(Some("manifest.json".into())).await.unwrap()
}

#[tokio::test]
async fn a_manifest_is_trimmed_while_it_is_spooled_as_a_pass_over_the_file_would() {
    let f = fixture(0);
    let fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/manifest.json")).unwrap();
    let mut reference = Vec::new();
    crate::domain::manifest::trim(&fixture[..], &mut reference).unwrap();
    for size in [1 << 10, 64 << 10, fixture.len()] {
        let mut spooled = spooled_trimming(&f.jade, &fixture, size).await;
        assert_eq!(std::fs::read(&spooled.path).unwrap(), fixture, "the spool holds the body as sent");
        assert_eq!(spooled.len, fixture.len() as u64);
        let trimmed = spooled.trimmed.take().expect("trimmed while spooled").unwrap();
        assert_eq!(std::fs::read(&trimmed.path).unwrap(), reference, "chunks of {size}");
        assert_eq!(trimmed.len, reference.len() as u64);
    }
    // Not JSON: the trimming stops at the first bad byte, the spool still gets every byte.
    let body = [&b"{\"metadata\": x"[..], &vec![b' '; 1 << 20]].concat();
    let mut spooled = spooled_trimming(&f.jade, &body, 4096).await;
    assert_eq!(std::fs::read(&spooled.path).unwrap(), body);
    let Err(ManifestError::NotJson(why)) = *spooled.trimmed.take().unwrap() else { panic!("not refused") };
    assert!(why.contains("byte 13"), "{why}");

    // An upload spooled this way stores what one trimmed afterwards does.
    let upload = ManifestUpload {
        environment_slug: "env100".into(),
        dag_id: None,
        run_id: None,
        tag: Some("streamed".into()),
        file: Some(spooled_trimming(&f.jade, &fixture, 100_000).await),
    };
    f.jade.upload_manifest(upload).await.unwrap();
    let query = ManifestQuery::Tag { environment_slug: "env100".into(), tag: "streamed".into() };
    assert_eq!(read(f.jade.manifest(&query, true).await.unwrap()).await, reference);
    assert_eq!(read(f.jade.manifest(&query, false).await.unwrap()).await, fixture);
}

/// A user who may run the jobs of project 10 (environments 100 and 101) only.
fn runner() -> Identity {
    Identity {
        email: Some("runner@account1.example".into()),
        permissions: vec!["account1:project10|workbench:airflow|write".into()],
        account_ids: vec![1],
        ..Identity::default()
    }
}

async fn job_id(f: &Fixture, environment_id: i64, dag_id: &str) -> i64 {
    let key = (environment_id, dag_id.to_owned());
    f.registry.job_ids(std::slice::from_ref(&key)).await.unwrap()[&key]
}

#[tokio::test]
async fn a_triggered_run_is_registered_at_once_and_read_alike_later() {
    let f = fixture(3);
    // Runs listed before, as a client does: their ids are registered first.
    list(&f, RunFilter::default(), RunOrder::default(), Page::new(None, None)).await;
    let job = job_id(&f, 100, "a").await;
    let request = RunRequest { cause: Some("Nightly".into()), ..RunRequest::default() };
    let run = f.jade.trigger_run(&runner(), 1, job, &request).await.unwrap();
    assert_eq!((run.status(), run.job_id, run.environment.id), (RunStatus::Queued, job, 100));
    assert_eq!(run.dag_run.id, 4, "Airflow's next DAG run");
    assert!(run.status_message.is_none());
    let read = f.jade.run(1, run.id, Embed::default()).await.unwrap();
    assert_eq!((read.id, read.dag_run.run_id.clone()), (run.id, run.dag_run.run_id.clone()));
    let listed = list(&f, RunFilter::default(), RunOrder::parse("-id").unwrap(), Page::new(None, Some(1))).await;
    assert_eq!(listed[0].id, run.id, "the newest run, with the same id");
}

#[tokio::test]
async fn running_jobs_needs_the_permission_and_a_job_of_the_account() {
    let f = fixture(3);
    let elsewhere = job_id(&f, 102, "a").await;
    let denied = f.jade.trigger_run(&runner(), 1, elsewhere, &RunRequest::default()).await.unwrap_err();
    assert_eq!(denied, Error::Forbidden("You have no permission to run jobs in this environment.".into()));
    assert_eq!(f.airflow.next_run_id(102), 4, "no DAG run was made");
    let reader = Identity { account_ids: vec![1], ..Identity::default() };
    let job = job_id(&f, 100, "a").await;
    assert!(matches!(f.jade.trigger_run(&reader, 1, job, &RunRequest::default()).await, Err(Error::Forbidden(_))));
    assert_eq!(f.jade.trigger_run(&runner(), 2, job, &RunRequest::default()).await.unwrap_err(), Error::not_found());
    assert_eq!(f.jade.trigger_run(&runner(), 1, 9999, &RunRequest::default()).await.unwrap_err(), Error::not_found());
}

#[tokio::test]
async fn a_cancelled_run_is_cancelled_from_then_on_and_a_finished_one_is_left_alone() {
    let f = fixture(3);
    let job = job_id(&f, 100, "a").await;
    let run = f.jade.trigger_run(&runner(), 1, job, &RunRequest::default()).await.unwrap();
    let cancelled = f.jade.cancel_run(&runner(), 1, run.id).await.unwrap();
    assert_eq!((cancelled.status(), cancelled.dag_run.state.as_deref()), (RunStatus::Cancelled, Some("failed")));
    let dbt_cloud = list(
        &f,
        RunFilter { statuses: Some(vec![2]), ..RunFilter::default() },
        RunOrder::default(),
        Page::new(None, None),
    )
    .await;
    assert!(dbt_cloud.iter().any(|r| r.id == run.id), "the first Jade's failed (2) holds it");
    // Cancelling a finished run answers it as it is.
    let again = f.jade.cancel_run(&runner(), 1, run.id).await.unwrap();
    assert_eq!(again.status(), RunStatus::Cancelled);
    // Run 1 of environment 100 failed by itself: not cancelled, and retried when asked.
    let failed = list(
        &f,
        RunFilter { environment_id: Some(100), ..RunFilter::default() },
        RunOrder::default(),
        Page::new(None, None),
    )
    .await;
    let failed = failed.into_iter().find(|r| r.dag_run.id == 1).unwrap();
    assert_eq!(failed.status(), RunStatus::Error);
    let retried = f.jade.retry_run(&runner(), 1, failed.id).await.unwrap();
    assert_eq!((retried.id, retried.status()), (failed.id, RunStatus::Queued));
    let refused = f.jade.retry_run(&runner(), 1, run.id).await.unwrap_err();
    assert_eq!(refused, Error::NotApplicable(format!("Run {} did not fail; nothing to retry.", run.id)));
}

#[tokio::test]
async fn rerun_retries_the_jobs_latest_run_when_it_failed() {
    let f = fixture(6);
    // Runs of DAG `b` in environment 101: 1 (failed), 3 (queued), 5 (success, the latest end).
    let job = job_id(&f, 101, "b").await;
    let refused = f.jade.rerun_job(&runner(), 1, job).await.unwrap_err();
    assert!(
        matches!(refused, Error::NotApplicable(ref m) if m.ends_with("did not fail; nothing to retry.")),
        "{refused:?}"
    );
    let fresh = job_id(&f, 100, "a").await;
    let run = f.jade.trigger_run(&runner(), 1, fresh, &RunRequest::default()).await.unwrap();
    f.jade.cancel_run(&runner(), 1, run.id).await.unwrap();
    assert!(
        matches!(f.jade.rerun_job(&runner(), 1, fresh).await, Err(Error::NotApplicable(_))),
        "a cancelled run did not fail"
    );
}

#[tokio::test]
async fn airflows_refusals_pass_through_and_nothing_is_recorded() {
    let f = fixture(1);
    // The DAG is gone from Airflow while Jade still knows its job.
    let job = job_id(&f, 100, "gone").await;
    let error = f.jade.trigger_run(&runner(), 1, job, &RunRequest::default()).await.unwrap_err();
    assert_eq!(error, Error::not_found(), "Jade reads the DAG before it asks Airflow");
    f.airflow.set_unreachable(100, true);
    let job = job_id(&f, 100, "a").await;
    let error = f.jade.trigger_run(&runner(), 1, job, &RunRequest::default()).await.unwrap_err();
    assert!(matches!(error, Error::NotFound(Some(ref m)) if m.contains("env100")), "{error:?}");
}

async fn list(f: &Fixture, filter: RunFilter, order: RunOrder, page: Page) -> Vec<JobRun> {
    f.jade.runs(1, &filter, order, page, Embed::default()).await.unwrap().items
}
