"""`promote`: a person approves or rejects the challenger in the Airflow UI (Required Actions).

Starts when `retrain` registers a challenger. The review shows the challenger's test metrics
beside the champion's on the same window. Approve moves the `champion` alias (the running
stream follows it) and the old champion becomes `previous`; Reject tags the version rejected
with the reason; either way who decided and when is recorded on the model version. No answer
within the configured timeout counts as a rejection.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from infra.settings import get_settings
from pipelines.approval import DECISION_KEY, RecordedApprovalOperator

SETTINGS = get_settings()
REVIEW = "ti.xcom_pull(task_ids='describe')"


@dag(
    dag_id="promote",
    schedule=[Asset.ref(name="model_challenger")],  # declared by `retrain`, which registers the challenger
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": "streamwarden", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["streamwarden", "models"],
    doc_md=__doc__,
)
def promote() -> None:
    @task
    def describe(dag_run=None) -> dict[str, str]:  # noqa: ANN001 - injected by Airflow
        from pipelines import tasks

        # A registry may hold several models: a run triggered with {"model_name": …} reviews that one.
        review = tasks.describe_challenger((dag_run.conf or {}).get("model_name"))
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
        response_timeout=timedelta(hours=SETTINGS.approval_timeout_hours),
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
