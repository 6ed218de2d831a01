#!/usr/bin/env python3
"""Runs jobs through Jade with the dbt Cloud clients people run, unchanged, against a Jade
in `API_COMPAT=dbt-cloud` (through the loopback TLS terminator) whose jobs are DAGs of a
running Airflow (tests/fixtures/airflow/live.sh): `quick` succeeds, `slow` runs long enough
to be cancelled, `flaky` fails once and succeeds when retried.

  * Apache Airflow's DbtCloudHook: trigger_job_run, wait_for_job_run_status, get_job_run,
    cancel_job_run, trigger_job_run(retry_from_failure=True) (the rerun endpoint), and
    DbtCloudRunJobOperator with wait_for_termination;
  * dbt-cloud-cli: `job run --wait`, `run cancel`;
  * dbtc: trigger_job (it polls the run to its end).

Prints PASS/FAIL per check; exits 1 if any failed.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
import types
from typing import Any, Callable
from urllib.parse import urlparse

# drive.py, beside this script: the expectations and the clients' environment.
from drive import Failed, clients_pointed_at, expect

QUEUED, RUNNING, SUCCESS, ERROR, CANCELLED = 1, 3, 10, 20, 30


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.failed: list[str] = []
        self.passed = 0
        self.host = urlparse(args.base_url).netloc
        self.tag = args.label

    def check(self, name: str, body: Callable[[], Any]) -> None:
        name = f"[{self.tag}] {name}"
        try:
            body()
        except Exception as e:  # the client raised, or an expectation failed: the finding
            detail = str(e) if isinstance(e, Failed) else f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"
            self.failed.append(name)
            print(f"FAIL {name}: {detail}", flush=True)
            return
        self.passed += 1
        print(f"PASS {name}", flush=True)

    def hook(self):
        from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudHook

        return DbtCloudHook(timeout_seconds=30)

    def status(self, run_id: int) -> int:
        return self.hook().get_job_run(run_id=run_id).json()["data"]["status"]

    def wait(self, run_id: int, wanted: int) -> None:
        deadline = time.monotonic() + self.args.patience
        while (status := self.status(run_id)) != wanted:
            expect(time.monotonic() < deadline, f"run {run_id} is {status}, not {wanted}, after {self.args.patience} s")
            time.sleep(1)

    # --- Airflow --------------------------------------------------------------------------------

    def airflow(self) -> None:
        from airflow.providers.dbt.cloud.hooks.dbt import DbtCloudJobRunStatus
        from airflow.providers.dbt.cloud.operators.dbt import DbtCloudRunJobOperator

        a = self.args

        def trigger_and_wait():
            data = self.hook().trigger_job_run(job_id=a.quick, cause="DbtCloudHook").json()["data"]
            expect(data["status"] == QUEUED and data["job_definition_id"] == a.quick, f"answered {data}")
            done = self.hook().wait_for_job_run_status(
                run_id=data["id"], expected_statuses=DbtCloudJobRunStatus.SUCCESS.value, check_interval=1, timeout=a.patience
            )
            expect(done is True, f"wait_for_job_run_status answered {done}")
            run = self.hook().get_job_run(run_id=data["id"], include_related=["run_steps"]).json()["data"]
            expect(run["status"] == SUCCESS and run["trigger"]["cause"] == "DbtCloudHook", f"{run}")
            expect([s["status"] for s in run["run_steps"]] == [SUCCESS], f"steps {run['run_steps']}")

        self.check("airflow.trigger_job_run + wait_for_job_run_status(SUCCESS)", trigger_and_wait)

        def cancel():
            run_id = self.hook().trigger_job_run(job_id=a.slow, cause="to be cancelled").json()["data"]["id"]
            self.wait(run_id, RUNNING)
            self.hook().cancel_job_run(run_id=run_id)
            self.wait(run_id, CANCELLED)
            expect(self.hook().get_job_run_status(run_id=run_id) == DbtCloudJobRunStatus.CANCELLED.value, "not cancelled")

        self.check("airflow.cancel_job_run (the operator's on_kill)", cancel)

        def retry_from_failure():
            first = self.hook().trigger_job_run(job_id=a.flaky, cause="fails once").json()["data"]["id"]
            self.wait(first, ERROR)
            again = self.hook().trigger_job_run(job_id=a.flaky, cause="retried", retry_from_failure=True).json()["data"]
            expect(again["id"] == first, f"the rerun answered run {again['id']}, not {first}")
            self.wait(first, SUCCESS)

        self.check("airflow.trigger_job_run(retry_from_failure=True) (POST …/jobs/{id}/rerun/)", retry_from_failure)

        def operator():
            pushed: dict[str, Any] = {}
            ti = types.SimpleNamespace(try_number=1, xcom_push=lambda key, value: pushed.update({key: value}))
            task = DbtCloudRunJobOperator(
                task_id="dbt_cloud_run",
                job_id=a.quick,
                trigger_reason="DbtCloudRunJobOperator",
                wait_for_termination=True,
                check_interval=1,
                timeout=a.patience,
                deferrable=False,
            )
            run_id = task.execute({"ti": ti})
            expect(isinstance(run_id, int) and pushed.get("job_run_id") == run_id, f"answered {run_id}, pushed {pushed}")
            expect(self.status(run_id) == SUCCESS, "not successful")

        self.check("airflow DbtCloudRunJobOperator(wait_for_termination=True).execute", operator)

    # --- dbt-cloud-cli --------------------------------------------------------------------------

    def cli(self) -> None:
        a = self.args
        env = dict(os.environ)
        env.update({"DBT_CLOUD_HOST": self.host, "DBT_CLOUD_API_TOKEN": a.token, "DBT_CLOUD_ACCOUNT_ID": str(a.account_id)})
        command = [sys.executable, "-c", "import sys; from dbt_cloud.cli import dbt_cloud; sys.argv[0] = 'dbt-cloud'; sys.exit(dbt_cloud())"]

        def run(*argv: str) -> Any:
            done = subprocess.run([*command, *argv], env=env, capture_output=True, timeout=a.patience + 30)
            out = done.stdout.decode("utf-8", "replace")
            expect(done.returncode == 0, f"exit {done.returncode}: {done.stderr.decode('utf-8', 'replace')[-500:] or out[-500:]}")
            return out

        def job_run_wait():
            body = json.loads(run("job", "run", "--job-id", str(a.quick), "--cause", "dbt-cloud-cli", "--wait"))
            expect(body["data"]["status"] == SUCCESS, f"printed {body['data']}")

        self.check("dbt-cloud job run --wait (exits 0)", job_run_wait)

        def run_cancel():
            run_id = self.hook().trigger_job_run(job_id=a.slow, cause="cancelled by the cli").json()["data"]["id"]
            self.wait(run_id, RUNNING)
            body = json.loads(run("run", "cancel", "--run-id", str(run_id)))
            expect(body["data"]["id"] == run_id, f"answered {body}")
            self.wait(run_id, CANCELLED)

        self.check("dbt-cloud run cancel", run_cancel)

    # --- dbtc -----------------------------------------------------------------------------------

    def dbtc(self) -> None:
        from dbtc import dbtCloudClient

        a = self.args
        cloud = dbtCloudClient(api_key=a.token, service_token=a.token, host=self.host).cloud

        def trigger_job():
            run = cloud.trigger_job(a.account_id, a.quick, {"cause": "dbtc"}, should_poll=True, poll_interval=1)
            expect(run["data"]["status"] == SUCCESS, f"answered {run['data']['status']}")

        self.check("dbtc.trigger_job (polls to the end)", trigger_job)

    def run(self) -> int:
        self.airflow()
        self.cli()
        self.dbtc()
        print(f"[{self.tag}] {self.passed} passed, {len(self.failed)} failed", flush=True)
        return 1 if self.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="https://localhost:PORT, the TLS terminator in front of Jade")
    parser.add_argument("--ca-file", required=True, help="the terminator's certificate (trusted by every client)")
    parser.add_argument("--token", required=True)
    parser.add_argument("--account-id", type=int, required=True)
    parser.add_argument("--quick", type=int, required=True, help="the job of the DAG `quick`")
    parser.add_argument("--slow", type=int, required=True, help="the job of the DAG `slow`")
    parser.add_argument("--flaky", type=int, required=True, help="the job of the DAG `flaky`")
    parser.add_argument("--label", required=True, help="what the checks are named by (the Airflow version)")
    parser.add_argument("--patience", type=int, default=120, help="seconds a run may take to reach a status")
    args = parser.parse_args()
    with clients_pointed_at(args.base_url, args.ca_file, args.account_id, args.token):
        return Runner(args).run()

if __name__ == "__main__":
    sys.exit(main())
