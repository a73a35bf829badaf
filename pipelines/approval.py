"""The approval step of the `promote` DAG: Airflow's ApprovalOperator, keeping the answer either way.

ApprovalOperator returns the reviewer's answer on Approve but, on Reject, skips its downstream
tasks without pushing anything, so who rejected and why would be lost. This subclass pushes
the answer (XCom key `decision`) before the operator acts on it; the DAG's last task records it
on the model version whichever way it went. Only `dags/promote.py` imports this module.
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
                },
            )
        return super().execute_complete(context, event)
