"""What stops a batch pipeline (retraining, feature refresh) before it registers or writes anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.exceptions import WardenError

if TYPE_CHECKING:
    from pipelines.validation import ValidationReport


class PipelineError(WardenError):
    """A batch pipeline cannot go on with its data or its inputs."""


class DataValidationError(PipelineError):
    """The training window failed its data validation; `report` has every result."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(
            f"training window {report.window} {report.summary()}; "
            "fix the lake data, choose another window or adjust the WARDEN_VALIDATION_* settings"
        )
        self.report = report


class TrainingError(PipelineError):
    """The data cannot train a model (too little of it, no anomalies in a split)."""


class GateNotRun(PipelineError):
    """A candidate reached registration without the evaluation gate's verdict on its run."""
