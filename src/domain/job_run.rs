//! Job runs: one per Airflow DAG run, rendered the way dbt Cloud renders runs.

use std::cmp::Ordering;

use crate::domain::catalog::Timestamp;
use crate::domain::job::{EnvironmentRef, Job};
use crate::domain::paging::{RunOrder, RunSort};

/// The columns of Airflow's `dag_run` table that Jade reads (Airflow 2 and 3 alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagRun {
    pub id: i64,
    pub dag_id: String,
    pub run_id: Option<String>,
    pub state: Option<String>,
    /// Null for runs made by `airflow dags test` and some backfills.
    pub queued_at: Option<Timestamp>,
    /// When Airflow made the row: Airflow 3 only (null for runs migrated from Airflow 2).
    pub created_at: Option<Timestamp>,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
    /// How the run came to be: `scheduled`, `manual`, `backfill`, `dataset_triggered`.
    pub run_type: Option<String>,
    /// The run's note (`dag_run_note`, Airflow 2.5 and later): the cause of a run started
    /// through Jade.
    pub note: Option<String>,
}

impl DagRun {
    /// When the run was queued, as dbt Cloud's `created_at`/`queued_at` show it: `queued_at`,
    /// else when Airflow made the row, else when it started (contract §6), so a run that
    /// exists always has a time.
    pub fn queued(&self) -> Option<Timestamp> {
        self.queued_at.or(self.created_at).or(self.start_date)
    }
}

/// Which status codes the API speaks (`API_COMPAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiCompat {
    /// The first Jade's codes: success 1, failed 2, queued 3, running 5; artifacts wrapped
    /// in `{"data": "<file>"}`.
    #[default]
    Jade,
    /// dbt Cloud's codes: queued 1, running 3, success 10, error 20, cancelled 30; artifacts
    /// answered as the file itself.
    DbtCloud,
}

/// A run's status. Airflow states other than success, failed and running (or none at all)
/// count as queued: they have not run to an end yet. A run cancelled through Jade, which
/// Airflow marked failed, is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    Success,
    Error,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] =
        [RunStatus::Queued, RunStatus::Running, RunStatus::Success, RunStatus::Error, RunStatus::Cancelled];

    pub fn from_state(state: Option<&str>) -> Self {
        match state {
            Some("success") => RunStatus::Success,
            Some("failed") => RunStatus::Error,
            Some("running") => RunStatus::Running,
            _ => RunStatus::Queued,
        }
    }

    /// The code in a compat mode. The first Jade knew no cancellation: a cancelled run is
    /// failed (2) in `API_COMPAT=jade`.
    pub fn code(self, compat: ApiCompat) -> i32 {
        match (compat, self) {
            (ApiCompat::Jade, RunStatus::Success) => 1,
            (ApiCompat::Jade, RunStatus::Error | RunStatus::Cancelled) => 2,
            (ApiCompat::Jade, RunStatus::Queued) => 3,
            (ApiCompat::Jade, RunStatus::Running) => 5,
            (ApiCompat::DbtCloud, RunStatus::Queued) => 1,
            (ApiCompat::DbtCloud, RunStatus::Running) => 3,
            (ApiCompat::DbtCloud, RunStatus::Success) => 10,
            (ApiCompat::DbtCloud, RunStatus::Error) => 20,
            (ApiCompat::DbtCloud, RunStatus::Cancelled) => 30,
        }
    }

    /// The statuses a `status` filter value names: none for codes no run can have (such as
    /// dbt Cloud's Starting), which then match nothing.
    pub fn with_code(code: i64, compat: ApiCompat) -> impl Iterator<Item = RunStatus> {
        RunStatus::ALL.into_iter().filter(move |status| i64::from(status.code(compat)) == code)
    }

    pub fn humanized(self) -> &'static str {
        match self {
            RunStatus::Queued => "Queued",
            RunStatus::Running => "Running",
            RunStatus::Success => "Success",
            RunStatus::Error => "Error",
            RunStatus::Cancelled => "Cancelled",
        }
    }

    /// Success, error and cancelled are final; a queued or running run may still change.
    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Success | RunStatus::Error | RunStatus::Cancelled)
    }
}

/// What the run index keeps of a DAG run: what a run list filters and orders on. The page's
/// runs themselves are read from Airflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRun {
    pub dag_run_id: i64,
    pub dag_id: String,
    pub status: RunStatus,
    /// [`DagRun::queued`]: what `created_at` filters and orders on.
    pub queued_at: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
}

impl IndexedRun {
    /// Whether the index holds `airflow` (the run as Airflow has it) as it is: a run the
    /// index holds as cancelled is the failed run Airflow has.
    pub fn holds(&self, airflow: &IndexedRun) -> bool {
        let status = if self.status == RunStatus::Cancelled { RunStatus::Error } else { self.status };
        IndexedRun { status, ..self.clone() } == *airflow
    }
}

impl From<&DagRun> for IndexedRun {
    fn from(run: &DagRun) -> Self {
        IndexedRun {
            dag_run_id: run.id,
            dag_id: run.dag_id.clone(),
            status: RunStatus::from_state(run.state.as_deref()),
            queued_at: run.queued(),
            end_date: run.end_date,
        }
    }
}

/// The order of job runs across environments: by the sort field (unfinished or unqueued
/// runs last in both directions), then by job-run id in the same direction.
pub fn compare(order: RunOrder, a: (&IndexedRun, i64), b: (&IndexedRun, i64)) -> Ordering {
    let by_id = a.1.cmp(&b.1);
    let primary = match order.field {
        RunSort::Id => Ordering::Equal,
        RunSort::CreatedAt => nulls_last(a.0.queued_at, b.0.queued_at, order.descending),
        RunSort::FinishedAt => nulls_last(a.0.end_date, b.0.end_date, order.descending),
    };
    primary.then(if order.descending { by_id.reverse() } else { by_id })
}

fn nulls_last(a: Option<Timestamp>, b: Option<Timestamp>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if descending => b.cmp(&a),
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// Jade's integer id for (environment, dag_run.id), from the `job_run_ids` registry.
    pub id: i64,
    /// The job's id, also rendered as `job_definition_id`.
    pub job_id: i64,
    pub dag_run: DagRun,
    pub environment: EnvironmentRef,
    /// The storage key of the manifest uploaded for this run, if any.
    pub artifact_path: Option<String>,
    /// With `include_related=job`.
    pub job: Option<Box<Job>>,
    /// With `include_related=run_steps`.
    pub run_steps: Option<Vec<RunStep>>,
    /// The run's page in the Airflow UI, when `AIRFLOW_UI_URL_TEMPLATE` is set.
    pub href: Option<String>,
    /// Whether it was cancelled through Jade (contract §3 "Running jobs").
    pub cancelled: bool,
    /// Why a run is as it is, when Jade knows more than its status says (a run triggered
    /// while its DAG is paused).
    pub status_message: Option<String>,
}

impl JobRun {
    /// As Airflow has the run; cancelled while Airflow has it failed (it may be run again).
    pub fn status(&self) -> RunStatus {
        match RunStatus::from_state(self.dag_run.state.as_deref()) {
            RunStatus::Error if self.cancelled => RunStatus::Cancelled,
            status => status,
        }
    }

    pub fn is_running(&self) -> bool {
        self.status() == RunStatus::Running
    }

    pub fn is_complete(&self) -> bool {
        self.status().is_finished()
    }

    /// end − queued ([`DagRun::queued`]), in whole seconds (see [`seconds_between`]).
    pub fn duration(&self) -> Option<i64> {
        seconds_between(self.dag_run.queued(), self.dag_run.end_date)
    }

    /// start − queued ([`DagRun::queued`]), in whole seconds (see [`seconds_between`]).
    pub fn queued_duration(&self) -> Option<i64> {
        seconds_between(self.dag_run.queued(), self.dag_run.start_date)
    }

    /// end − start, in whole seconds (see [`seconds_between`]).
    pub fn run_duration(&self) -> Option<i64> {
        seconds_between(self.dag_run.start_date, self.dag_run.end_date)
    }
}

/// The three durations as dbt Cloud reports them: counted to `now` while the run is not
/// finished (a queued run has run for no time yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveDurations {
    pub duration: Option<i64>,
    pub queued_duration: Option<i64>,
    pub run_duration: Option<i64>,
}

impl JobRun {
    pub fn live_durations(&self, now: Timestamp) -> LiveDurations {
        let run = &self.dag_run;
        let end = run.end_date.or(Some(now));
        let started = run.start_date.or(if self.is_complete() { None } else { Some(now) });
        LiveDurations {
            duration: seconds_between(run.queued(), end),
            queued_duration: seconds_between(run.queued(), started),
            run_duration: run.start_date.and_then(|start| seconds_between(Some(start), end)),
        }
    }

    /// The run's page in the Airflow UI, from a template with `{slug}`, `{dag_id}` and
    /// `{run_id}` (`AIRFLOW_UI_URL_TEMPLATE`); the values are URL-encoded.
    pub fn href(&self, template: &str) -> String {
        let encode = |value: &str| -> String {
            value
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        template
            .replace("{slug}", &encode(&self.environment.slug))
            .replace("{dag_id}", &encode(&self.dag_run.dag_id))
            .replace("{run_id}", &encode(self.dag_run.run_id.as_deref().unwrap_or_default()))
    }
}

/// `HH:MM:SS`, as dbt Cloud writes durations (hours may pass 99).
pub fn clock(seconds: i64) -> String {
    let seconds = seconds.max(0);
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// Whole seconds from `from` to `to`, each first truncated to its second, as the first Jade
/// counted them (its timestamps held whole seconds): 00.900 to 01.100 is 1 second, not 0.
/// `None` when either is missing; never below 0 (`airflow dags test` on Airflow 3 dates a
/// run's start at its logical date, before the row was made).
fn seconds_between(from: Option<Timestamp>, to: Option<Timestamp>) -> Option<i64> {
    Some((to?.timestamp() - from?.timestamp()).max(0))
}

/// The columns of Airflow's `task_instance` table that Jade reads: a run's steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInstance {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// `-1` unless the task is mapped (and on Airflow 2.2, which has no mapped tasks).
    pub map_index: i32,
    pub state: Option<String>,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
}

/// A step of a job run: one task instance of its DAG run (contract §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// From 1, in the order of [`RunStep::of`].
    pub index: usize,
    /// The task id, with `[map_index]` when the task is mapped.
    pub name: String,
    pub status: RunStatus,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

impl RunStep {
    /// The steps of one DAG run from its task instances: in start order (instances that did
    /// not start last), then by task id and map index.
    pub fn of(mut instances: Vec<TaskInstance>) -> Vec<RunStep> {
        instances.sort_by(|a, b| {
            nulls_last(a.start_date, b.start_date, false)
                .then_with(|| a.task_id.cmp(&b.task_id))
                .then(a.map_index.cmp(&b.map_index))
        });
        instances
            .into_iter()
            .enumerate()
            .map(|(n, instance)| RunStep {
                index: n + 1,
                name: if instance.map_index >= 0 {
                    format!("{}[{}]", instance.task_id, instance.map_index)
                } else {
                    instance.task_id
                },
                status: RunStatus::from_state(instance.state.as_deref()),
                started_at: instance.start_date,
                finished_at: instance.end_date,
            })
            .collect()
    }

    /// finished − started in whole seconds; counted to `now` while running when `now` is
    /// given (dbt Cloud's way).
    pub fn duration(&self, now: Option<Timestamp>) -> Option<i64> {
        let end = match self.status {
            RunStatus::Running => self.finished_at.or(now),
            _ => self.finished_at,
        };
        seconds_between(self.started_at, end)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::paging::Order;

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(chrono::Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap())
    }

    fn dag_run(id: i64, state: Option<&str>) -> DagRun {
        DagRun {
            id,
            dag_id: "daily".into(),
            run_id: Some(format!("manual__{id}")),
            state: state.map(str::to_owned),
            queued_at: at(0),
            created_at: None,
            start_date: at(5),
            end_date: at(65),
            run_type: None,
            note: None,
        }
    }

    fn job_run(dag_run: DagRun) -> JobRun {
        JobRun {
            id: 1,
            job_id: 2,
            dag_run,
            environment: EnvironmentRef { id: 1, slug: "dev".into(), account_id: 1, project_id: 1 },
            artifact_path: None,
            job: None,
            run_steps: None,
            href: None,
            cancelled: false,
            status_message: None,
        }
    }

    #[test]
    fn airflow_states_map_to_status_codes() {
        let codes = |compat| {
            ["success", "failed", "queued", "running", "up_for_retry"]
                .map(|s| RunStatus::from_state(Some(s)).code(compat))
        };
        assert_eq!(codes(ApiCompat::Jade), [1, 2, 3, 5, 3]);
        assert_eq!(codes(ApiCompat::DbtCloud), [10, 20, 1, 3, 1]);
        assert_eq!(RunStatus::from_state(None), RunStatus::Queued);
    }

    #[test]
    fn status_filter_codes_follow_the_compat_mode() {
        let with = |code, compat| RunStatus::with_code(code, compat).collect::<Vec<_>>();
        assert_eq!(with(5, ApiCompat::Jade), [RunStatus::Running]);
        assert_eq!(with(5, ApiCompat::DbtCloud), []);
        assert_eq!(with(10, ApiCompat::DbtCloud), [RunStatus::Success]);
        assert_eq!(with(30, ApiCompat::DbtCloud), [RunStatus::Cancelled]);
        // The first Jade's failed covers cancelled runs.
        assert_eq!(with(2, ApiCompat::Jade), [RunStatus::Error, RunStatus::Cancelled]);
        assert_eq!(with(2, ApiCompat::DbtCloud), [], "dbt Cloud's Starting: no run has it");
    }

    #[test]
    fn a_cancelled_run_is_cancelled_while_airflow_has_it_failed() {
        let mut run = job_run(dag_run(1, Some("failed")));
        run.cancelled = true;
        assert_eq!(run.status(), RunStatus::Cancelled);
        assert!(run.is_complete());
        assert_eq!((run.status().code(ApiCompat::DbtCloud), run.status().code(ApiCompat::Jade)), (30, 2));
        // Cleared in Airflow afterwards: it runs again.
        run.dag_run.state = Some("running".into());
        assert_eq!(run.status(), RunStatus::Running);
        let indexed_cancelled =
            IndexedRun { status: RunStatus::Cancelled, ..IndexedRun::from(&dag_run(2, Some("failed"))) };
        assert!(indexed_cancelled.holds(&IndexedRun::from(&dag_run(2, Some("failed")))));
        assert!(!indexed_cancelled.holds(&IndexedRun::from(&dag_run(2, Some("success")))));
    }

    #[test]
    fn durations_are_whole_seconds_or_none() {
        let run = job_run(dag_run(1, Some("success")));
        assert_eq!(run.duration(), Some(65));
        assert_eq!(run.queued_duration(), Some(5));
        assert_eq!(run.run_duration(), Some(60));
        assert!(run.is_complete());
        let mut running = dag_run(2, Some("running"));
        running.end_date = None;
        let running = job_run(running);
        assert_eq!(running.duration(), None);
        assert_eq!(running.run_duration(), None);
        assert!(running.is_running() && !running.is_complete());
    }

    fn at_millis(millis: i64) -> Option<Timestamp> {
        Some(chrono::Utc.timestamp_millis_opt(1_700_000_000_000 + millis).unwrap())
    }

    #[test]
    fn durations_truncate_each_timestamp_to_whole_seconds_first() {
        let mut fractions = dag_run(1, Some("success"));
        (fractions.queued_at, fractions.start_date, fractions.end_date) =
            (at_millis(900), at_millis(1_100), at_millis(61_000));
        let run = job_run(fractions);
        // Not 60.1, 0.2 and 59.9 seconds rounded down.
        assert_eq!((run.duration(), run.queued_duration(), run.run_duration()), (Some(61), Some(1), Some(60)));
        let mut within_a_second = dag_run(2, Some("success"));
        (within_a_second.queued_at, within_a_second.start_date, within_a_second.end_date) =
            (at_millis(0), at_millis(999), at_millis(1_000));
        let run = job_run(within_a_second);
        assert_eq!((run.duration(), run.queued_duration(), run.run_duration()), (Some(1), Some(0), Some(1)));
        // Before the epoch too: each instant goes down to its own second.
        let mut early = dag_run(3, Some("success"));
        let before_epoch = |millis| Some(chrono::Utc.timestamp_millis_opt(millis).unwrap());
        (early.queued_at, early.start_date, early.end_date) =
            (before_epoch(-1_500), before_epoch(-500), before_epoch(500));
        let run = job_run(early);
        assert_eq!((run.duration(), run.queued_duration(), run.run_duration()), (Some(2), Some(1), Some(1)));
    }

    #[test]
    fn dbt_cloud_durations_count_to_now_while_unfinished() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(3_725), "01:02:05");
        assert_eq!(clock(360_000), "100:00:00");
        let now = at(100).unwrap();
        let finished = job_run(dag_run(1, Some("success")));
        assert_eq!(
            finished.live_durations(now),
            LiveDurations { duration: Some(65), queued_duration: Some(5), run_duration: Some(60) }
        );
        let mut running = dag_run(2, Some("running"));
        running.end_date = None;
        assert_eq!(
            job_run(running).live_durations(now),
            LiveDurations { duration: Some(100), queued_duration: Some(5), run_duration: Some(95) }
        );
        let mut queued = dag_run(3, Some("queued"));
        queued.start_date = None;
        queued.end_date = None;
        assert_eq!(
            job_run(queued).live_durations(now),
            LiveDurations { duration: Some(100), queued_duration: Some(100), run_duration: None }
        );
    }

    #[test]
    fn href_fills_the_template_with_encoded_values() {
        let run = job_run(dag_run(1, Some("success")));
        assert_eq!(
            run.href("https://{slug}.example/dags/{dag_id}/grid?dag_run_id={run_id}"),
            "https://dev.example/dags/daily/grid?dag_run_id=manual__1"
        );
        let mut odd = dag_run(2, None);
        odd.run_id = Some("manual__2024-01-01T00:00:00+00:00".into());
        assert_eq!(job_run(odd).href("{run_id}"), "manual__2024-01-01T00%3A00%3A00%2B00%3A00");
    }

    #[test]
    fn unfinished_runs_sort_last_both_ways() {
        let finished = IndexedRun::from(&dag_run(1, Some("success")));
        let mut unfinished = dag_run(2, Some("running"));
        unfinished.end_date = None;
        let unfinished = IndexedRun::from(&unfinished);
        for descending in [false, true] {
            let order = Order { field: RunSort::FinishedAt, descending };
            assert_eq!(compare(order, (&finished, 1), (&unfinished, 2)), Ordering::Less);
        }
        let by_id = Order { field: RunSort::Id, descending: true };
        assert_eq!(compare(by_id, (&finished, 1), (&unfinished, 2)), Ordering::Greater);
    }

    #[test]
    fn a_run_without_queued_at_is_queued_when_made_or_started() {
        let mut tested = dag_run(1, Some("success"));
        tested.queued_at = None;
        assert_eq!(tested.queued(), at(5), "Airflow 2: the start");
        tested.created_at = at(2);
        assert_eq!(tested.queued(), at(2), "Airflow 3: when the row was made");
        let run = job_run(tested);
        assert_eq!((run.duration(), run.queued_duration()), (Some(63), Some(3)));
        assert_eq!(IndexedRun::from(&run.dag_run).queued_at, at(2));
        // Airflow 3's `dags test` starts a run at its logical date, before the row was made.
        let mut backdated = dag_run(2, Some("success"));
        (backdated.queued_at, backdated.created_at, backdated.start_date) = (None, at(100), at(-1000));
        assert_eq!(job_run(backdated).queued_duration(), Some(0));
    }

    fn instance(task_id: &str, map_index: i32, state: Option<&str>, started: Option<i64>) -> TaskInstance {
        TaskInstance {
            dag_id: "daily".into(),
            run_id: "manual__1".into(),
            task_id: task_id.into(),
            map_index,
            state: state.map(str::to_owned),
            start_date: started.and_then(at),
            end_date: started.and_then(|s| at(s + 10)),
        }
    }

    #[test]
    fn steps_go_in_start_order_then_by_task_id_with_mapped_instances_named() {
        let steps = RunStep::of(vec![
            instance("test", -1, Some("failed"), Some(30)),
            instance("seed", 1, Some("success"), Some(10)),
            instance("seed", 0, Some("success"), Some(10)),
            instance("waiting", -1, Some("upstream_failed"), None),
            instance("docs", -1, None, None),
            instance("run", -1, Some("running"), Some(20)),
        ]);
        let names: Vec<(usize, &str, RunStatus)> = steps.iter().map(|s| (s.index, s.name.as_str(), s.status)).collect();
        assert_eq!(
            names,
            [
                (1, "seed[0]", RunStatus::Success),
                (2, "seed[1]", RunStatus::Success),
                (3, "run", RunStatus::Running),
                (4, "test", RunStatus::Error),
                (5, "docs", RunStatus::Queued),
                (6, "waiting", RunStatus::Queued),
            ]
        );
        assert_eq!(steps[0].duration(None), Some(10));
        let mut running = steps[2].clone();
        running.finished_at = None;
        assert_eq!((running.duration(None), running.duration(at(25))), (None, Some(5)));
        assert_eq!(steps[4].duration(at(25)), None, "a step that did not start has no duration");
    }
}
