"""`retrain`: validate → training set → train → evaluate → register, on the lake's labeled history.

Declarations only; each task is one function of `pipelines.tasks`, the adapter that builds the
task's context. Tasks pass lake locations and MLflow run ids, are safe to retry, and a failed data
validation stops the run before training (the report is an artifact of the `validate-<window>`
run in MLflow). A promotable candidate becomes `challenger` and updates the `model_challenger`
asset, which starts `promote` for the same model.

Daily by default; `WARDEN_AIRFLOW_SCHEDULES=false` (the embedded stack's `[scheduler]
use_job_schedule`) leaves every DAG to manual triggers. A run triggered with
`{"model_name": "…"}` retrains that registered model instead of WARDEN_MODEL_NAME.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

# Declared here, where it is produced; `promote` refers to it by name. Each event names its model.
CHALLENGER = Asset(name="model_challenger", uri="mlflow://models/challenger")


@dag(
    dag_id="retrain",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "model_name": Param(
            None, type=["null", "string"], description="The registered model to retrain; empty: WARDEN_MODEL_NAME."
        )
    },
    default_args={"owner": "streamwarden", "retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["streamwarden", "models"],
    doc_md=__doc__,
)
def retrain() -> None:
    @task
    def choose_window(dag_run=None) -> str:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        return tasks.training_window(dag_run.run_after.isoformat())

    @task
    def validate(window: str, params=None) -> str:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks
        from pipelines.exceptions import DataValidationError

        try:
            return tasks.validate(window, params["model_name"])
        except DataValidationError as failed:
            # Bad data stays bad on a retry: fail now, with the report's summary in the log.
            raise AirflowFailException(str(failed)) from None

    @task
    def build_training_set(window: str, params=None) -> str:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        return tasks.build_training_set(window, params["model_name"])

    @task
    def train(window: str, location: str, params=None) -> list[str]:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        return tasks.train(window, location, params["model_name"])

    @task
    def evaluate(location: str, run_ids: list[str], params=None) -> str:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        return tasks.evaluate(location, run_ids, params["model_name"])

    @task(outlets=[CHALLENGER])
    def register(candidate_run: str, params=None, outlet_events=None) -> dict[str, Any]:  # noqa: ANN001 - injected
        # The parameter is not `run_id`: Airflow reserves that name for its own.
        from pipelines import tasks

        registered = tasks.register(candidate_run, params["model_name"])
        # The asset event names the model, so that `promote` reviews the same one.
        outlet_events[CHALLENGER].extra = {"model_name": registered["model_name"], "version": registered["version"]}
        return registered

    window = choose_window()
    location = build_training_set(window)
    validate(window) >> location
    register(evaluate(location, train(window, location)))


retrain()
