"""`warden simulate` against the embedded broker: every event produced is read back, labels land."""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from infra.lake import Lake
from infra.settings import Settings
from streaming.kafka_io import count_records, end_offsets
from tests.conftest import run_warden

pytestmark = pytest.mark.integration


def test_produce_n_read_exactly_n_back(kafka: Settings, session_env: dict[str, str]) -> None:
    before = end_offsets(kafka, kafka.topic.telemetry)
    result = run_warden(
        session_env, "simulate", "--events", "5000", "--rate", "20000", "--devices", "40", "--seed", "3"
    )
    assert result.returncode == 0, result.stderr
    assert "produced 5,000 events" in result.stdout
    after = end_offsets(kafka, kafka.topic.telemetry)
    counts = count_records(kafka, before, after)
    assert sum(counts.values()) == 5000
    assert sum(1 for c in counts.values() if c) > 6  # keys spread over the 12 partitions

    # Key = device_id, and a device always lands in the same partition.
    consumer = Consumer({"bootstrap.servers": kafka.kafka.bootstrap, "group.id": "key-check"})
    partition = next(p for p, c in counts.items() if c)
    consumer.assign([TopicPartition(kafka.topic.telemetry, partition, before.by_partition[partition])])
    messages = consumer.consume(counts[partition], timeout=10)
    consumer.close()
    devices = {m.key().decode() for m in messages}
    assert all(orjson.loads(m.value())["device_id"] == m.key().decode() for m in messages)
    assert devices

    labels = Lake(kafka).read("labels").to_pandas()
    simulated = labels[labels["event_id"].str.startswith("s3.")]
    assert len(simulated) == 5000
    assert simulated["event_id"].is_unique


def test_unreachable_broker_is_one_line(session_env: dict[str, str]) -> None:
    env = {**session_env, "WARDEN_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = run_warden(env, "simulate", "--events", "10")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
