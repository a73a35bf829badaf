"""`promote`: a person approves or rejects the challenger in the Airflow UI (Required Actions).

Starts when `retrain` registers a challenger. The review shows the challenger's test metrics
beside the champion's on the same window. Approve moves the `champion` alias (the running
stream follows it) and the old champion becomes `previous`; Reject tags the version rejected
with the reason; either way who decided and when is recorded on the model version. No answer
within 24 hours counts as a rejection.

A run started by the `model_challenger` asset reviews the model its event names; a run triggered
by hand reviews `{"model_name": "…"}`, or WARDEN_MODEL_NAME.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from approval import DECISION_KEY, RecordedApprovalOperator  # dags/approval.py, beside this file

REVIEW = "ti.xcom_pull(task_ids='describe')"
# No answer by then counts as a rejection.
APPROVAL_TIMEOUT = timedelta(hours=24)


@dag(
    dag_id="promote",
    schedule=[Asset.ref(name="model_challenger")],  # declared by `retrain`, which registers the challenger
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "model_name": Param(
            None, type=["null", "string"], description="The registered model to review; empty: WARDEN_MODEL_NAME."
        )
    },
    default_args={"owner": "streamwarden", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["streamwarden", "models"],
    doc_md=__doc__,
)
def promote() -> None:
    @task
    def describe(params=None, triggering_asset_events=None) -> dict[str, str]:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        # A registry may hold several models: review the one the run names, or the asset event's.
        events = [event for batch in (triggering_asset_events or {}).values() for event in batch]
        model_name = params["model_name"] or next((e.extra.get("model_name") for e in events if e.extra), None)
        review = tasks.describe_challenger(model_name)
        if review is None:
            raise AirflowSkipException("no challenger is waiting for a decision")
        return review

    approve = RecordedApprovalOperator(
        task_id="approve",
        subject=f"Promote {{{{ {REVIEW}['model_name'] }}}} v{{{{ {REVIEW}['version'] }}}} to champion?",
        body=f"{{{{ {REVIEW}['body'] }}}}",
        params={
            "reason": Param("", type="string", description="Why: recorded on the model version."),
            "override_gate": Param(
                False,
                type="boolean",
                description="Approve a version the gate refused; recorded on it with who decided and why.",
            ),
        },
        defaults="Reject",
        response_timeout=APPROVAL_TIMEOUT,
    )

    @task
    def promote_challenger(review: dict[str, str], ti=None) -> str:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        return tasks.apply_decision(
            review["model_name"], review["version"], ti.xcom_pull(task_ids="approve", key=DECISION_KEY)
        )

    # ApprovalOperator skips its direct downstream task on Reject; this one comes after it.
    @task(trigger_rule="none_failed_min_one_success")
    def record_rejection(review: dict[str, str], ti=None) -> str:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        decision = ti.xcom_pull(task_ids="approve", key=DECISION_KEY)
        if decision is None:
            raise AirflowFailException("the approval step recorded no answer")
        if decision["approved"]:
            raise AirflowSkipException("approved: promoted by promote_challenger")
        return tasks.apply_decision(review["model_name"], review["version"], decision)

    review = describe()
    review >> approve >> promote_challenger(review) >> record_rejection(review)


promote()
