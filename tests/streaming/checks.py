"""What the stream tests check the job's output with: the lake's `scored/` (local or HDFS, through
`infra.lake`) and a patient wait; the topics are read with `streaming.kafka_io.committed_records`."""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import pytest

from infra.exceptions import LakeError
from infra.lake import Lake
from infra.settings import Settings
from tests.conftest import WardenProcess

SCORED_COLUMNS = ["event_id", "device_id", "model_version", "is_alert", "feature_status", "score"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, stream: WardenProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if stream is not None and stream.proc.poll() is not None:
            pytest.fail(
                f"the stream exited ({stream.proc.returncode}) while waiting for {what}:\n{stream.output()[-3000:]}"
            )
        time.sleep(1.0)
    tail = stream.output()[-3000:] if stream else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def scored(settings: Settings) -> pd.DataFrame:
    """The scored table's rows as of its latest commit; none before the stream's first batch."""
    try:
        table = Lake(settings).read_table("scored", SCORED_COLUMNS)
    except (LakeError, OSError):
        return pd.DataFrame(columns=SCORED_COLUMNS)
    return table.to_pandas()
