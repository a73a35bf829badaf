"""What the stream tests check the job's output with: the lake's `scored/` (local or HDFS, through
`infra.lake`), the topics read as read_committed consumers see them, and a patient wait."""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition

from infra.exceptions import LakeError
from infra.lake import Lake
from infra.settings import Settings
from streaming.kafka_io import end_offsets
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


def read_committed(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"check-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    ends = end_offsets(settings, topic).by_partition
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    records, idle = [], 0
    while idle < 5:
        batch = consumer.consume(1000, timeout=1.0)
        idle = 0 if batch else idle + 1
        records += [(m.key(), m.value(), dict(m.headers() or [])) for m in batch if m.error() is None]
    consumer.close()
    return records
