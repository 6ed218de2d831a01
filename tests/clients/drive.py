"""Drives the off-the-shelf dbt Cloud clients against a running Jade.

Every client call that Jade promises to answer (contract §3, "dbt Cloud clients") is made
through the real, unchanged client library, against Jade behind a TLS terminator
(tests/clients/tls_proxy.py), and its result is checked against what the seed holds:

  * Apache Airflow's DbtCloudHook (apache-airflow-providers-dbt-cloud), with the connection
    given as AIRFLOW_CONN_DBT_CLOUD_DEFAULT (no Airflow metadata database);
  * dbt-cloud-cli, as the `dbt-cloud` command;
  * dbtc's dbtCloudClient.

One line per check (`PASS name` or `FAIL name: why`), then `N passed, N failed`; the exit
status is 1 when any check failed. Every check runs under its own time limit, so a client
that pages forever (Airflow's hook loops while `count < total_count`) fails that check
instead of hanging the run.

    python drive.py --base-url https://localhost:PORT --ca-file cert.pem --token T \\
        --account-id 1 --runs 120 --jobs 9 ... (see --help)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from typing import Any, Callable, Iterator
from urllib.parse import urlparse


class CheckTimeout(Exception):
    pass


class Failed(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.passed = 0
        self.failed: list[str] = []
        parsed = urlparse(args.base_url)
        self.host = parsed.netloc  # what every client calls the "host" / "tenant": localhost:PORT
        self.dbt_cloud = args.compat == "dbt-cloud"
        with open(args.manifest_file, "rb") as fh:
            self.manifest = fh.read()
        self.run_results = json.dumps(
            {
                "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"},
                "results": [],
                "elapsed_time": 1.5,
                "args": {},
            }
        ).encode()
        self.compiled_path = "compiled/analytics/models/example.sql"
        self.compiled = b"select 1 as id\n"
        self.uploaded: list[str] = ["manifest.json"]

    # --- running checks ---------------------------------------------------------------------

    def check(self, name: str, body: Callable[[], Any]) -> Any:
        def on_alarm(signum, frame):  # noqa: ARG001
            raise CheckTimeout(f"no result within {self.args.check_timeout}s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(self.args.check_timeout)
        try:
            result = body()
        except Failed as e:
            self.fail(name, str(e))
            return None
        except CheckTimeout as e:
            self.fail(name, str(e))
            return None
        except Exception as e:  # the client raised: that is the finding
            frames = traceback.extract_tb(e.__traceback__)
            where = next(
                (f"{os.path.basename(f.filename)}:{f.lineno}" for f in reversed(frames) if "site-packages" in f.filename),
                "",
            )
            self.fail(name, f"{type(e).__name__}: {short(str(e))}" + (f" (at {where})" if where else ""))
            return None
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        self.passed += 1
        print(f"PASS {name}", flush=True)
        return result

    def fail(self, name: str, why: str) -> None:
        self.failed.append(name)
        print(f"FAIL {name}: {why}", flush=True)

    # --- expectations shared by the clients ---------------------------------------------------

    def success_status(self) -> int:
        return 10 if self.dbt_cloud else 1

    def artifact_body_matches(self, raw: bytes, expected: bytes, what: str) -> None:
        """The body of `GET …/artifacts/<path>`: the file itself (dbt-cloud) or
        `{"data": "<file>"}` (jade; for a non-JSON file either form is accepted)."""
        if self.dbt_cloud:
            expect(raw == expected, f"{what}: body is not the artifact itself: {short(raw.decode('utf-8', 'replace'))}")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and set(body) >= {"data"} and isinstance(body["data"], str):
            expect(body["data"].encode() == expected, f"{what}: data is not the uploaded file")
            return
        expect(
            raw == expected and not expected.strip().startswith(b"{"),
            f'{what}: expected {{"data": "<file>"}}, got {short(raw.decode("utf-8", "replace"))}',
        )

    def artifact_json_matches(self, value: Any, expected: bytes, what: str) -> None:
        """A client that decoded the artifact body as JSON."""
        if self.dbt_cloud:
            expect(value == json.loads(expected), f"{what}: decoded body is not the artifact: {short(value)}")
        else:
            expect(
                isinstance(value, dict) and isinstance(value.get("data"), str) and value["data"].encode() == expected,
                f'{what}: expected {{"data": "<file>"}}, got {short(value)}',
            )

    def all_runs_once(self, runs: list[dict], what: str) -> None:
        ids = [run["id"] for run in runs]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        expect(not duplicates, f"{what}: runs seen more than once: {duplicates[:20]}")
        expect(
            len(ids) == self.args.runs,
            f"{what}: {len(ids)} distinct runs, the account has {self.args.runs}",
        )

    def run_steps_ok(self, run: Any, what: str) -> None:
        """The run's steps (`include_related` run_steps): its DAG run's task instances."""
        steps = run.get("run_steps") if isinstance(run, dict) else None
        expect(isinstance(steps, list), f"{what}: run_steps is not a list: {short(run)}")
        names = [step.get("name") for step in steps]
        expect(names == self.args.run_steps.split(","), f"{what}: steps {names}, expected {self.args.run_steps}")
        expect([step.get("index") for step in steps] == list(range(1, len(steps) + 1)), f"{what}: {short(steps)}")
        expect(all(step.get("status") == self.success_status() for step in steps), f"{what}: {short(steps)}")
        expect(all(step.get("status_humanized") == "Success" for step in steps), f"{what}: {short(steps)}")

    def artifact_list_ok(self, data: Any, what: str) -> None:
        expect(isinstance(data, list), f"{what}: data is not a list: {short(data)}")
        missing = [path for path in self.uploaded if path not in data]
        expect(not missing, f"{what}: {missing} not listed in {short(data)}")

    # --- setup: artifacts other than the manifest -----------------------------------------------

    def upload_artifacts(self) -> None:
        import requests

        files = [
            ("file", ("run_results.json", self.run_results, "application/json")),
            ("file", (self.compiled_path, self.compiled, "text/plain")),
        ]
        data = {
            "environment_slug": self.args.environment_slug,
            "dag_id": self.args.run_dag_id,
            "run_id": self.args.run_dag_run_id,
        }
        response = requests.post(
            f"{self.args.base_url}/api/v2/datacoves/artifacts",
            headers={"Authorization": f"Token {self.args.token}"},
            data=data,
            files=files,
            timeout=30,
        )
        expect(response.status_code == 201, f"POST /api/v2/datacoves/artifacts: {response.status_code} {short(response.text)}")
        self.uploaded += ["run_results.json", self.compiled_path]

    # --- Airflow ------------------------------------------------------------------------------

    def airflow(self) -> None:
        from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook, DbtCloudJobRunStatus

        a = self.args

        def hook() -> DbtCloudHook:
            return DbtCloudHook(timeout_seconds=30)

        def test_connection():
            ok, message = hook().test_connection()
            expect(ok, f"test_connection answered ({ok}, {message!r})")

        self.check("airflow.test_connection (GET /)", test_connection)

        def get_account():
            data = hook().get_account().json()["data"]
            expect(data["id"] == a.account_id, f"data.id {data.get('id')} != {a.account_id}")

        self.check("airflow.get_account", get_account)

        def list_jobs():
            responses = hook().list_jobs()
            jobs = [job for r in responses for job in r.json()["data"]]
            ids = [job["id"] for job in jobs]
            expect(len(set(ids)) == len(ids), f"duplicate jobs {ids}")
            expect(len(ids) == a.jobs, f"{len(ids)} jobs, the account has {a.jobs}")

        self.check("airflow.list_jobs", list_jobs)

        def list_jobs_filtered():
            responses = hook().list_jobs(project_id=a.project_id, environment_id=a.environment_id)
            jobs = [job for r in responses for job in r.json()["data"]]
            expect(jobs, "no jobs")
            wrong = [job["id"] for job in jobs if job["environment_id"] != a.environment_id]
            expect(not wrong, f"jobs outside environment {a.environment_id}: {wrong}")

        self.check("airflow.list_jobs(project_id, environment_id)", list_jobs_filtered)

        def get_job():
            data = hook().get_job(job_id=a.job_id).json()["data"]
            expect(data["id"] == a.job_id and data["name"] == a.job_name, f"got {short(data)}")

        self.check("airflow.get_job", get_job)

        def get_job_by_name():
            job = hook().get_job_by_name(
                project_name=a.project_name, environment_name=a.environment_name, job_name=a.job_name
            )
            expect(job["id"] == a.job_id, f"found job {job.get('id')}, expected {a.job_id}")

        self.check("airflow.get_job_by_name (v3 projects, environments; v2 jobs)", get_job_by_name)

        def list_job_runs():
            responses = hook().list_job_runs()
            expect(len(responses) >= 2, f"{len(responses)} page(s): the hook's offset paging was not exercised")
            self.all_runs_once([run for r in responses for run in r.json()["data"]], "list_job_runs")

        self.check("airflow.list_job_runs (offset paging, every run once)", list_job_runs)

        def list_job_runs_of_job():
            responses = hook().list_job_runs(job_definition_id=a.job_id, order_by="-id")
            runs = [run for r in responses for run in r.json()["data"]]
            wrong = [run["id"] for run in runs if run["job_definition_id"] != a.job_id]
            expect(not wrong, f"runs of other jobs: {wrong[:10]}")
            expect(len(runs) == a.job_runs, f"{len(runs)} runs, the job has {a.job_runs}")
            ids = [run["id"] for run in runs]
            expect(ids == sorted(ids, reverse=True), "not ordered by -id")

        self.check("airflow.list_job_runs(job_definition_id, order_by=-id)", list_job_runs_of_job)

        def get_job_runs_latest():
            data = hook().get_job_runs(payload={"job_definition_id": a.job_id, "order_by": "-created_at", "limit": 1}).json()["data"]
            expect(isinstance(data, list) and len(data) == 1, f"got {short(data)}")

        self.check("airflow.get_job_runs(order_by=-created_at, limit=1) (retry_from_failure)", get_job_runs_latest)

        def get_job_run():
            data = hook().get_job_run(run_id=a.run_id, include_related=["job", "trigger"]).json()["data"]
            expect(data["id"] == a.run_id, f"got {short(data)}")

        self.check("airflow.get_job_run(include_related=[job, trigger])", get_job_run)

        def get_job_run_steps():
            data = hook().get_job_run(run_id=a.run_id, include_related=["run_steps,job"]).json()["data"]
            self.run_steps_ok(data, "get_job_run(include_related=[run_steps,job])")
            expect(data["job"]["id"] == a.job_id, f"job {short(data['job'])}")

        self.check("airflow.get_job_run(include_related=[run_steps,job]) (OpenLineage)", get_job_run_steps)

        def log_failure_details():
            # What the operator and sensor log when a run ends badly: the run's steps.
            hook().log_job_run_failure_details(run_id=a.run_id)

        self.check("airflow.log_job_run_failure_details (include_related=[run_steps])", log_failure_details)

        def get_job_run_status():
            status = hook().get_job_run_status(run_id=a.run_id)
            expect(status == self.success_status(), f"status {status}, expected {self.success_status()}")

        self.check("airflow.get_job_run_status", get_job_run_status)

        if self.dbt_cloud:

            def wait_for_success():
                ok = hook().wait_for_job_run_status(
                    run_id=a.run_id,
                    expected_statuses=DbtCloudJobRunStatus.SUCCESS.value,
                    check_interval=1,
                    timeout=5,
                )
                expect(ok is True, f"answered {ok}")

            self.check("airflow.wait_for_job_run_status(SUCCESS)", wait_for_success)

        def list_job_run_artifacts():
            responses = hook().list_job_run_artifacts(run_id=a.run_id)
            # Not paginated: a single Response (typed list[Response] by the provider).
            response = responses[0] if isinstance(responses, list) else responses
            self.artifact_list_ok(response.json()["data"], "list_job_run_artifacts")

        self.check("airflow.list_job_run_artifacts (GET …/artifacts/)", list_job_run_artifacts)

        def get_manifest():
            response = hook().get_job_run_artifact(run_id=a.run_id, path="manifest.json")
            self.artifact_body_matches(response.content, self.manifest, "manifest.json")

        self.check("airflow.get_job_run_artifact(manifest.json)", get_manifest)

        def get_run_results():
            response = hook().get_job_run_artifact(run_id=a.run_id, path="run_results.json")
            self.artifact_body_matches(response.content, self.run_results, "run_results.json")

        self.check("airflow.get_job_run_artifact(run_results.json)", get_run_results)

    # --- dbt-cloud-cli ------------------------------------------------------------------------

    def cli(self) -> None:
        a = self.args
        # The `dbt-cloud` console script, run by this interpreter (the venv's script carries
        # the absolute path of the checkout that installed it in its shebang).
        executable = [
            sys.executable,
            "-c",
            "import sys; from dbt_cloud.cli import dbt_cloud; sys.argv[0] = 'dbt-cloud'; sys.exit(dbt_cloud())",
        ]
        env = dict(os.environ)
        env.update(
            {
                "DBT_CLOUD_HOST": self.host,
                "DBT_CLOUD_API_TOKEN": a.token,
                "DBT_CLOUD_ACCOUNT_ID": str(a.account_id),
                "LOG_LEVEL": "WARNING",
            }
        )

        def run(*argv: str) -> tuple[Any, subprocess.CompletedProcess]:
            done = subprocess.run(
                [*executable, *argv],
                env=env,
                capture_output=True,
                timeout=max(5, a.check_timeout - 5),
            )
            expect(
                done.returncode == 0,
                f"exit {done.returncode}: {short(done.stderr.decode('utf-8', 'replace').strip() or done.stdout.decode('utf-8', 'replace'))}",
            )
            try:
                return json.loads(done.stdout), done
            except ValueError:
                return None, done

        def data_of(*argv: str) -> Any:
            body, done = run(*argv)
            expect(isinstance(body, dict) and "data" in body, f"stdout is not a dbt Cloud body: {short(done.stdout.decode('utf-8', 'replace'))}")
            return body["data"]

        def has_id(items: Any, wanted: int, what: str) -> None:
            expect(isinstance(items, list), f"data is not a list: {short(items)}")
            expect(any(item.get("id") == wanted for item in items), f"{what} {wanted} not in {[i.get('id') for i in items]}")

        self.check("dbt-cloud account list (v3)", lambda: has_id(data_of("account", "list"), a.account_id, "account"))

        def account_get():
            data = data_of("account", "get")
            expect(data["id"] == a.account_id, f"got {short(data)}")

        self.check("dbt-cloud account get", account_get)
        self.check("dbt-cloud project list (v3)", lambda: has_id(data_of("project", "list"), a.project_id, "project"))

        def project_get():
            data = data_of("project", "get", "--project-id", str(a.project_id))
            expect(data["id"] == a.project_id, f"got {short(data)}")

        self.check("dbt-cloud project get (v3)", project_get)
        self.check(
            "dbt-cloud environment list (v3)",
            lambda: has_id(
                data_of("environment", "list", "--project-id", str(a.project_id)), a.environment_id, "environment"
            ),
        )

        def environment_get():
            data = data_of(
                "environment", "get", "--project-id", str(a.project_id), "--environment-id", str(a.environment_id)
            )
            expect(data["id"] == a.environment_id, f"got {short(data)}")

        self.check("dbt-cloud environment get (v3)", environment_get)

        def job_list():
            data = data_of("job", "list")
            expect(isinstance(data, list) and len(data) == a.jobs, f"{len(data or [])} jobs, expected {a.jobs}")

        self.check("dbt-cloud job list", job_list)

        def job_get():
            data = data_of("job", "get", "--job-id", str(a.job_id))
            expect(data["id"] == a.job_id, f"got {short(data)}")

        self.check("dbt-cloud job get", job_get)

        def run_list():
            body, done = run("run", "list")
            expect(isinstance(body, dict), f"stdout: {short(done.stdout.decode())}")
            expect(len(body["data"]) == min(100, a.runs), f"{len(body['data'])} runs on the first page")
            total = body["extra"]["pagination"]["total_count"]
            expect(total == a.runs, f"total_count {total}, the account has {a.runs}")

        self.check("dbt-cloud run list", run_list)

        def run_list_paginate():
            body, done = run("run", "list", "--paginate")
            expect(isinstance(body, dict), f"stdout: {short(done.stdout.decode())}")
            self.all_runs_once(body["data"], "run list --paginate")

        self.check("dbt-cloud run list --paginate (every run once)", run_list_paginate)

        def run_list_job():
            data = data_of("run", "list", "--job-id", str(a.job_id), "--order-by", "-id", "--limit", "100")
            wrong = [r["id"] for r in data if r["job_definition_id"] != a.job_id]
            expect(not wrong and len(data) == a.job_runs, f"{len(data)} runs, {len(wrong)} of other jobs")

        self.check("dbt-cloud run list --job-id --order-by -id", run_list_job)

        if self.dbt_cloud:

            def run_list_status():
                data = data_of("run", "list", "--status", "Succeeded")
                wrong = [r["id"] for r in data if r["status"] != 10]
                expect(data and not wrong, f"{len(data)} runs, {len(wrong)} not successful")
                if a.success_runs is not None:
                    expect(len(data) == a.success_runs, f"{len(data)} successful runs, expected {a.success_runs}")

            self.check("dbt-cloud run list --status Succeeded", run_list_status)

        def run_get():
            data = data_of("run", "get", "--run-id", str(a.run_id))
            expect(data["id"] == a.run_id, f"got {short(data)}")

        self.check("dbt-cloud run get", run_get)

        def run_get_related():
            data = data_of("run", "get", "--run-id", str(a.run_id), "--include-related", "job")
            expect(data["id"] == a.run_id, f"got {short(data)}")

        self.check('dbt-cloud run get --include-related job (include_related=["job"])', run_get_related)

        def run_get_steps():
            data = data_of("run", "get", "--run-id", str(a.run_id), "--include-related", "run_steps")
            self.run_steps_ok(data, "run get --include-related run_steps")

        self.check('dbt-cloud run get --include-related run_steps (include_related=["run_steps"])', run_get_steps)

        def list_artifacts():
            self.artifact_list_ok(data_of("run", "list-artifacts", "--run-id", str(a.run_id)), "list-artifacts")

        self.check("dbt-cloud run list-artifacts", list_artifacts)

        def get_artifact():
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "manifest.json")
                done = subprocess.run(
                    [*executable, "run", "get-artifact", "--run-id", str(a.run_id), "--path", "manifest.json", "-f", out],
                    env=env,
                    capture_output=True,
                    timeout=max(5, a.check_timeout - 5),
                )
                expect(done.returncode == 0, f"exit {done.returncode}: {short(done.stderr.decode('utf-8', 'replace'))}")
                with open(out, "rb") as fh:
                    self.artifact_body_matches(fh.read(), self.manifest, "manifest.json")

        self.check("dbt-cloud run get-artifact --path manifest.json", get_artifact)

    # --- dbtc -----------------------------------------------------------------------------------

    def dbtc(self) -> None:
        from dbtc import dbtCloudClient

        a = self.args
        # dbtc's three sub-clients share one session and each sets its headers; the last one
        # (semantic layer) sends `Bearer <service_token>`, so both are given the token.
        client = dbtCloudClient(api_key=a.token, service_token=a.token, host=self.host)
        cloud = client.cloud

        def body_ok(body: Any, what: str) -> Any:
            expect(isinstance(body, dict) and "data" in body, f"{what}: {short(body)}")
            expect(body.get("status", {}).get("is_success", True) is not False, f"{what}: {short(body)}")
            return body["data"]

        def has_id(items: Any, wanted: int, what: str) -> None:
            expect(isinstance(items, list), f"data is not a list: {short(items)}")
            expect(any(item.get("id") == wanted for item in items), f"{what} {wanted} not in {[i.get('id') for i in items]}")

        self.check(
            "dbtc.list_accounts (v3)", lambda: has_id(body_ok(cloud.list_accounts(), "list_accounts"), a.account_id, "account")
        )

        def get_account():
            data = body_ok(cloud.get_account(a.account_id), "get_account")
            expect(data["id"] == a.account_id, f"got {short(data)}")

        self.check("dbtc.get_account", get_account)
        self.check(
            "dbtc.list_projects (v3)",
            lambda: has_id(body_ok(cloud.list_projects(a.account_id), "list_projects"), a.project_id, "project"),
        )

        def list_projects_pk():
            data = body_ok(cloud.list_projects(a.account_id, project_id=[a.project_id]), "list_projects")
            expect([p["id"] for p in data] == [a.project_id], f"pk__in=[{a.project_id}] gave {[p['id'] for p in data]}")

        self.check("dbtc.list_projects(project_id=[..]) (pk__in)", list_projects_pk)

        def get_project():
            data = body_ok(cloud.get_project(a.account_id, a.project_id), "get_project")
            expect(data["id"] == a.project_id, f"got {short(data)}")

        self.check("dbtc.get_project (v3)", get_project)
        self.check(
            "dbtc.list_environments (v3)",
            lambda: has_id(
                body_ok(cloud.list_environments(a.account_id, a.project_id), "list_environments"),
                a.environment_id,
                "environment",
            ),
        )

        def get_environment():
            data = body_ok(cloud.get_environment(a.account_id, a.project_id, a.environment_id), "get_environment")
            expect(data["id"] == a.environment_id, f"got {short(data)}")

        self.check("dbtc.get_environment (v3)", get_environment)

        def list_jobs():
            data = body_ok(cloud.list_jobs(a.account_id), "list_jobs")
            expect(len(data) == a.jobs, f"{len(data)} jobs, expected {a.jobs}")

        self.check("dbtc.list_jobs", list_jobs)

        def list_jobs_project():
            data = body_ok(cloud.list_jobs(a.account_id, project_id=a.project_id), "list_jobs")
            wrong = [j["id"] for j in data if j["project_id"] != a.project_id]
            expect(data and not wrong, f"{len(data)} jobs, of other projects: {wrong}")

        self.check("dbtc.list_jobs(project_id) (project_id__in)", list_jobs_project)

        def get_job():
            data = body_ok(cloud.get_job(a.account_id, a.job_id), "get_job")
            expect(data["id"] == a.job_id, f"got {short(data)}")

        self.check("dbtc.get_job", get_job)

        def list_runs_paged():
            runs: list[dict] = []
            offset = 0
            for _ in range(100):
                body = cloud.list_runs(a.account_id, offset=offset, limit=100)
                data = body_ok(body, "list_runs")
                runs += data
                total = body["extra"]["pagination"]["total_count"]
                offset += len(data)
                if not data or offset >= total:
                    break
            self.all_runs_once(runs, "list_runs")

        self.check("dbtc.list_runs (offset/limit paging, every run once)", list_runs_paged)

        def list_runs_job():
            data = body_ok(cloud.list_runs(a.account_id, job_definition_id=a.job_id, limit=100), "list_runs")
            wrong = [r["id"] for r in data if r["job_definition_id"] != a.job_id]
            expect(not wrong and len(data) == a.job_runs, f"{len(data)} runs, {len(wrong)} of other jobs")

        self.check("dbtc.list_runs(job_definition_id)", list_runs_job)

        def get_run_steps():
            data = body_ok(cloud.get_run(a.account_id, a.run_id, include_related=["run_steps"]), "get_run")
            self.run_steps_ok(data, "get_run(include_related=[run_steps])")

        self.check("dbtc.get_run(include_related=[run_steps])", get_run_steps)

        if self.dbt_cloud:

            def list_runs_status():
                data = body_ok(cloud.list_runs(a.account_id, status="success", limit=100), "list_runs")
                wrong = [r["id"] for r in data if r["status"] != 10]
                expect(data and not wrong, f"{len(data)} runs, {len(wrong)} not successful")
                if a.success_runs is not None:
                    expect(len(data) == a.success_runs, f"{len(data)} successful runs, expected {a.success_runs}")

            self.check("dbtc.list_runs(status=success) (status__in=[10])", list_runs_status)

        def get_most_recent_run():
            body = cloud.get_most_recent_run(a.account_id)
            data = body_ok(body, "get_most_recent_run")
            everything = body_ok(cloud.list_runs(a.account_id, order_by="-id", limit=1), "list_runs")
            expect(isinstance(data, dict) and data.get("id") == everything[0]["id"], f"got {short(data)}")

        self.check("dbtc.get_most_recent_run (order_by=-id, limit=1)", get_most_recent_run)

        def get_run():
            data = body_ok(cloud.get_run(a.account_id, a.run_id), "get_run")
            expect(data["id"] == a.run_id, f"got {short(data)}")

        self.check("dbtc.get_run", get_run)

        def get_run_related():
            data = body_ok(cloud.get_run(a.account_id, a.run_id, include_related=["job", "trigger"]), "get_run")
            expect(data["id"] == a.run_id, f"got {short(data)}")
            if self.dbt_cloud:
                expect(isinstance(data.get("job"), dict), f"job not embedded: {short(data.get('job'))}")

        self.check("dbtc.get_run(include_related=[job, trigger]) (comma-separated)", get_run_related)

        def list_run_artifacts():
            self.artifact_list_ok(body_ok(cloud.list_run_artifacts(a.account_id, a.run_id), "list_run_artifacts"), "list_run_artifacts")

        self.check("dbtc.list_run_artifacts", list_run_artifacts)

        def get_run_artifact():
            self.artifact_json_matches(cloud.get_run_artifact(a.account_id, a.run_id, "manifest.json"), self.manifest, "manifest.json")

        self.check("dbtc.get_run_artifact(manifest.json)", get_run_artifact)

        def get_run_results():
            self.artifact_json_matches(
                cloud.get_run_artifact(a.account_id, a.run_id, "run_results.json"), self.run_results, "run_results.json"
            )

        self.check("dbtc.get_run_artifact(run_results.json)", get_run_results)

        def get_compiled():
            text = cloud.get_run_artifact(a.account_id, a.run_id, self.compiled_path)
            self.artifact_body_matches(text.encode(), self.compiled, self.compiled_path)

        self.check(f"dbtc.get_run_artifact({self.compiled_path}) (nested path)", get_compiled)

    # --- all ------------------------------------------------------------------------------------

    def run(self) -> int:
        groups = set(self.args.only.split(",")) if self.args.only else {"airflow", "cli", "dbtc"}
        print(f"driving dbt Cloud clients against {self.args.base_url} (API_COMPAT={self.args.compat})", flush=True)
        self.check("jade.upload_artifacts (POST /api/v2/datacoves/artifacts)", self.upload_artifacts)
        if "airflow" in groups:
            self.airflow()
        if "cli" in groups:
            self.cli()
        if "dbtc" in groups:
            self.dbtc()
        print(f"{self.passed} passed, {len(self.failed)} failed", flush=True)
        return 1 if self.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="https://localhost:PORT, the TLS terminator in front of Jade")
    parser.add_argument("--ca-file", required=True, help="the terminator's certificate (trusted by every client)")
    parser.add_argument("--token", required=True)
    parser.add_argument("--compat", choices=["jade", "dbt-cloud"], default="jade", help="Jade's API_COMPAT")
    parser.add_argument("--account-id", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True, help="runs in the account")
    parser.add_argument("--success-runs", type=int, help="successful runs in the account")
    parser.add_argument("--jobs", type=int, required=True, help="jobs in the account")
    parser.add_argument("--project-id", type=int, required=True)
    parser.add_argument("--project-name", required=True)
    parser.add_argument("--environment-id", type=int, required=True)
    parser.add_argument("--environment-name", required=True)
    parser.add_argument("--environment-slug", required=True)
    parser.add_argument("--job-id", type=int, required=True, help="a job of that environment")
    parser.add_argument("--job-name", required=True)
    parser.add_argument("--job-runs", type=int, required=True, help="runs of that job")
    parser.add_argument("--run-id", type=int, required=True, help="a successful run with an uploaded manifest")
    parser.add_argument("--run-dag-id", required=True, help="that run's DAG")
    parser.add_argument("--run-dag-run-id", required=True, help="that run's Airflow run_id")
    parser.add_argument("--manifest-file", required=True, help="the manifest uploaded for that run")
    parser.add_argument("--run-steps", required=True, help="that run's step names, comma-separated, in order")
    parser.add_argument("--only", help="comma-separated subset of airflow,cli,dbtc")
    parser.add_argument("--check-timeout", type=int, default=60, help="seconds each check may take")
    args = parser.parse_args()
    with clients_pointed_at(args.base_url, args.ca_file, args.account_id, args.token):
        return Driver(args).run()


@contextlib.contextmanager
def clients_pointed_at(base_url: str, ca_file: str, account_id: int, token: str) -> Iterator[None]:
    """Points every client at Jade behind the TLS terminator: they go through `requests`
    (Airflow, dbt-cloud-cli, dbtc) or the ssl module, so they trust the terminator's
    certificate, and never a proxy for loopback; Airflow's hook finds its connection in
    AIRFLOW_CONN_DBT_CLOUD_DEFAULT, with a throwaway AIRFLOW_HOME."""
    os.environ["REQUESTS_CA_BUNDLE"] = ca_file
    os.environ["SSL_CERT_FILE"] = ca_file
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [os.environ.get(name), "localhost", "127.0.0.1"]))
    airflow_home = tempfile.mkdtemp(prefix="jade-airflow-")
    os.environ.setdefault("AIRFLOW_HOME", airflow_home)
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"
    os.environ["AIRFLOW_CONN_DBT_CLOUD_DEFAULT"] = json.dumps(
        {"conn_type": "dbt_cloud", "host": urlparse(base_url).netloc, "login": str(account_id), "password": token}
    )
    try:
        yield
    finally:
        shutil.rmtree(airflow_home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
