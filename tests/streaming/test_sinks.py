"""The Kafka sink against the embedded broker: one transaction per batch, never left open."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import NewTopic

from infra.settings import Settings
from infra.stack.kafka import admin_client
from streaming.sinks import TransactionalKafkaSink
from tests.streaming.checks import read_committed

pytestmark = pytest.mark.integration


@pytest.fixture
def sink_settings(kafka: Settings) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    settings = kafka.model_copy(update={"topic_alerts": f"sink-alerts-{suffix}", "topic_dlq": f"sink-dlq-{suffix}"})
    admin = admin_client(settings)
    topics = [NewTopic(settings.topic_alerts, 1, 1), NewTopic(settings.topic_dlq, 1, 1)]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    return settings


def _failing_after(records: list[tuple[bytes | None, bytes]], count: int) -> Iterator[tuple[bytes | None, bytes]]:
    """Yields `count` records, then fails as a read-back from a lake that lost its DataNode does."""
    yield from records[:count]
    raise OSError("Could not obtain block")


def test_a_batch_whose_records_fail_midway_is_written_once_by_its_retry(sink_settings: Settings) -> None:
    alerts = [(f"dev-{i}".encode(), f"alert-{i}".encode()) for i in range(10)]
    sink = TransactionalKafkaSink(sink_settings, f"sink-test-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(OSError, match="Could not obtain block"):
            sink.publish(0, _failing_after(alerts, 4), [])
        # The retry of the same batch, on the same sink (the job restarts its query, not itself).
        assert sink.publish(0, alerts, [(None, b"\xff\xfe", [("reason", b"invalid_json")])])
        assert not sink.publish(0, alerts, [])  # written: a replay is skipped
    finally:
        sink.close()
    assert sorted(value for _, value, _ in read_committed(sink_settings, sink_settings.topic_alerts)) == sorted(
        value for _, value in alerts
    )
    assert [value for _, value, _ in read_committed(sink_settings, sink_settings.topic_dlq)] == [b"\xff\xfe"]
