"""The embedded broker does what a one-node production cluster does: transactions, consumer groups."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from infra.endpoints import admin_client
from infra.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(kafka: Settings) -> str:
    name = f"test-{uuid.uuid4().hex[:8]}"
    admin = admin_client(kafka)
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(timeout=30)
    return name


def _consume_all(settings: Settings, topic: str, group: str, expected: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    seen: list[bytes] = []
    idle = 0
    while idle < 6:
        batch = consumer.consume(500, timeout=1.0)
        if not batch:
            idle += 1 if len(seen) >= expected else 0
            continue
        seen.extend(m.value() for m in batch if m.error() is None)
    consumer.close()
    return seen


def test_transactions_hide_aborted_records(kafka: Settings, topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka.kafka.bootstrap, "transactional.id": f"tx-{topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, f"committed-{i}".encode(), key=str(i).encode())
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(7):
        producer.produce(topic, f"aborted-{i}".encode())
    producer.abort_transaction(30)

    values = _consume_all(kafka, topic, f"g-{topic}", expected=10)
    assert sorted(values) == sorted(f"committed-{i}".encode() for i in range(10))


def test_consumer_group_commits_and_resumes(kafka: Settings, topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka.kafka.bootstrap, "acks": "all"})
    for i in range(30):
        producer.produce(topic, f"m-{i}".encode(), key=str(i % 5).encode())
    producer.flush(30)
    group = f"g-{uuid.uuid4().hex[:6]}"
    assert len(_consume_all(kafka, topic, group, expected=30)) == 30
    for i in range(30, 40):
        producer.produce(topic, f"m-{i}".encode())
    producer.flush(30)
    # The same group resumes from its committed offsets: only the 10 new records.
    assert sorted(_consume_all(kafka, topic, group, expected=10)) == sorted(f"m-{i}".encode() for i in range(30, 40))
