//! Airflow databases made by Airflow itself: `airflow db migrate` of apache-airflow 2.11 and
//! 3.3 (installed by `scripts/install-airflow.sh`), the DAGs of `tests/fixtures/airflow/dags`
//! parsed by `airflow dags reserialize`, runs made by `airflow dags test`, `dags trigger` and
//! `tasks clear` (`tests/fixtures/airflow/make-database.sh`).
//!
//! Making them takes a minute, so it happens once per machine and fixture: a template
//! database `jade_airflow_<digest of the fixtures>` holds one schema per version
//! (`airflow2`, `airflow3`), and each test copies it (`CREATE DATABASE … TEMPLATE`).

use std::path::PathBuf;
use std::process::Output;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::{connect, url};

/// A real Airflow major version, as installed in the tools directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Airflow {
    /// apache-airflow 2.11.0
    Two,
    /// apache-airflow 3.3.2
    Three,
}

impl Airflow {
    pub const BOTH: [Airflow; 2] = [Airflow::Two, Airflow::Three];

    /// The venv `scripts/install-airflow.sh` makes.
    pub fn venv(self) -> PathBuf {
        let tools = std::env::var_os("JADE_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools"));
        tools.join(self.schema())
    }

    /// The schema that holds this version's tables in the template.
    pub fn schema(self) -> &'static str {
        match self {
            Airflow::Two => "airflow2",
            Airflow::Three => "airflow3",
        }
    }

    /// Runs `program args…` of this Airflow (`airflow …`, or `python <script of the fixtures>`)
    /// on the Airflow tables in `schema` of `database`, failing the test with its output when
    /// it fails.
    pub async fn run(self, database: &str, schema: &str, program: &str, args: &[&str]) -> Output {
        let output = tokio::process::Command::new(fixtures().join("airflow.sh"))
            .arg(self.venv())
            .arg(url(database))
            .arg(schema)
            .arg(program)
            .args(args)
            .output()
            .await
            .expect("tests/fixtures/airflow/airflow.sh runs");
        assert!(
            output.status.success(),
            "Airflow {self:?}: {program} {args:?} on {database}.{schema} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/airflow")
}

/// What the template is made from: a change to any of it makes a new template.
const MADE_FROM: [&[u8]; 5] = [
    include_bytes!("../fixtures/airflow/airflow.sh"),
    include_bytes!("../fixtures/airflow/make-database.sh"),
    include_bytes!("../fixtures/airflow/dags/jade_dags.py"),
    include_bytes!("../fixtures/airflow/requirements-airflow2.txt"),
    include_bytes!("../fixtures/airflow/requirements-airflow3.txt"),
];

/// Serializes making the template across test processes.
const TEMPLATE_LOCK: i64 = 0x4a41_4445_4146_4c57;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The template database, made first if this machine does not have it yet.
pub async fn template() -> &'static str {
    TEMPLATE.get_or_init(make_template).await
}

async fn make_template() -> String {
    let mut digest = Sha256::new();
    for part in MADE_FROM {
        digest.update(Sha256::digest(part));
    }
    let hex: String = digest.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    let name = format!("jade_airflow_{hex}");
    let admin = connect("postgres").await;
    admin.execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK]).await.unwrap();
    let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap().is_some();
    if !exists {
        for version in Airflow::BOTH {
            assert!(
                version.venv().join("bin/airflow").exists(),
                "Airflow {version:?} is not installed at {}: run scripts/install-airflow.sh (scripts/test.sh does)",
                version.venv().display()
            );
        }
        // Made under another name and renamed when complete, so a run cut off halfway
        // leaves nothing that looks finished.
        let partial = format!("{name}_partial");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {partial} WITH (FORCE)")).await.unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {partial}")).await.unwrap();
        let started = std::time::Instant::now();
        let made = futures::future::join_all(Airflow::BOTH.map(|version| {
            let partial = partial.clone();
            async move {
                let output = tokio::process::Command::new(fixtures().join("make-database.sh"))
                    .arg(version.venv())
                    .arg(url(&partial))
                    .arg(version.schema())
                    .output()
                    .await
                    .expect("tests/fixtures/airflow/make-database.sh runs");
                (version, output)
            }
        }))
        .await;
        for (version, output) in made {
            assert!(
                output.status.success(),
                "making the Airflow {version:?} test database failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        admin.batch_execute(&format!("ALTER DATABASE {partial} RENAME TO {name}")).await.unwrap();
        eprintln!("made the Airflow test databases ({name}) in {:.0?}", started.elapsed());
        // Templates of earlier fixtures are of no more use.
        let stale = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'jade\\_airflow\\_%' AND datname <> $1",
                &[&name],
            )
            .await
            .unwrap();
        for row in stale {
            let stale: String = row.get(0);
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {stale} WITH (FORCE)")).await.unwrap();
        }
    }
    admin.execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK]).await.unwrap();
    name
}

/// A running Airflow of `tests/fixtures/airflow/live.sh` (started once per run of the suite
/// by `scripts/test.sh`): its REST API, its database and Jade's user there.
#[derive(Debug, Clone)]
pub struct LiveAirflow {
    pub url: String,
    pub database: String,
    pub username: String,
    pub password: String,
}

/// Where `live.sh` keeps the running Airflows' settings (`JADE_LIVE_AIRFLOW`).
pub fn live_dir() -> PathBuf {
    std::env::var_os("JADE_LIVE_AIRFLOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/airflow-live"))
}

impl Airflow {
    /// The running Airflow of this version, failing the test with how to start it.
    pub fn live(self) -> LiveAirflow {
        let version = match self {
            Airflow::Two => 2,
            Airflow::Three => 3,
        };
        let path = live_dir().join(format!("airflow{version}.env"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "no running Airflow {version} ({}: {e}): start them with `tests/fixtures/airflow/live.sh start {}` \
                 (scripts/test.sh does)",
                path.display(),
                live_dir().display()
            )
        });
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
                .to_owned()
        };
        LiveAirflow {
            url: field("url"),
            database: field("database"),
            username: field("username"),
            password: field("password"),
        }
    }
}
