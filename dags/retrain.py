"""`retrain`: validate → training set → train → evaluate → register, on the lake's labeled history.

Declarations only; each task is one function of `pipelines.tasks`. Tasks pass lake locations and
MLflow run ids, are safe to retry, and a failed data validation stops the run before training
(the report is an artifact of the `validate-<window>` run in MLflow). A promotable candidate
becomes `challenger` and updates the `model_challenger` asset, which starts `promote`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task
from airflow.sdk.exceptions import AirflowFailException

from infra.settings import get_settings

SETTINGS = get_settings()
# Declared here, where it is produced; `promote` refers to it by name.
CHALLENGER = Asset(name="model_challenger", uri=f"mlflow://models/{SETTINGS.model_name}/challenger")


@dag(
    dag_id="retrain",
    schedule=SETTINGS.retrain_schedule or None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
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
    def validate(window: str) -> str:
        from pipelines import tasks
        from pipelines.exceptions import DataValidationError

        try:
            return tasks.validate(window)
        except DataValidationError as failed:
            # Bad data stays bad on a retry: fail now, with the report's summary in the log.
            raise AirflowFailException(str(failed)) from None

    @task
    def build_training_set(window: str) -> str:
        from pipelines import tasks

        return tasks.build_training_set(window)

    @task
    def train(window: str, location: str) -> list[str]:
        from pipelines import tasks

        return tasks.train(window, location)

    @task
    def evaluate(location: str, run_ids: list[str]) -> str:
        from pipelines import tasks

        return tasks.evaluate(location, run_ids)

    @task(outlets=[CHALLENGER])
    def register(candidate_run: str) -> dict[str, Any]:  # not `run_id`: Airflow reserves that name for its own
        from pipelines import tasks

        return tasks.register(candidate_run)

    window = choose_window()
    location = build_training_set(window)
    validate(window) >> location
    register(evaluate(location, train(window, location)))


retrain()
