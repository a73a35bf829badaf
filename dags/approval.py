"""The approval step of the `promote` DAG: Airflow's ApprovalOperator, keeping the answer either way.

ApprovalOperator returns the reviewer's answer on Approve but, on Reject, skips its downstream
tasks without pushing anything, so who rejected and why would be lost. This subclass pushes
the answer (XCom key `decision`) before the operator acts on it; the DAG's last task records it
on the model version whichever way it went.

It sits beside `promote.py`, the DAG that uses it (Airflow puts the DAG folder on `sys.path`);
`.airflowignore` keeps the DAG processor from parsing it as a DAG file.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

DECISION_KEY = "decision"


class RecordedApprovalOperator(ApprovalOperator):
    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            responded_at = event.get("responded_at")
            context["ti"].xcom_push(
                key=DECISION_KEY,
                value={
                    "approved": event["chosen_options"] == [self.APPROVE],
                    "params_input": event.get("params_input") or {},
                    # None when the response timeout applied the default answer.
                    "responded_by_user": event.get("responded_by_user"),
                    "responded_at": responded_at.isoformat() if responded_at else None,
                    # How long a person had: the record of a timeout says it.
                    "timeout_hours": self.response_timeout.total_seconds() / 3600 if self.response_timeout else None,
                },
            )
        return super().execute_complete(context, event)
