"""`feature_refresh`: the lake's newest telemetry → rolling device statistics → Feast, online;
then the small files the stream left in the lake's Delta tables are compacted.

Declarations only; the work is `pipelines.tasks.refresh_features` (Spark on the lake, the Feast
offline source, `features.store.materialize`) and `pipelines.tasks.compact_lake` (deltalake).
Every 15 minutes; `WARDEN_AIRFLOW_SCHEDULES=false` leaves it to manual triggers.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="feature_refresh",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "streamwarden", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["streamwarden", "features"],
    doc_md=__doc__,
)
def feature_refresh() -> None:
    @task
    def refresh(dag_run=None) -> str:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        return tasks.refresh_features(dag_run.run_after.isoformat())

    # Compaction runs whatever the refresh did: the stream keeps adding files either way.
    @task(trigger_rule="all_done")
    def compact() -> str:
        from pipelines import tasks

        return tasks.compact_lake()

    refresh() >> compact()


feature_refresh()
