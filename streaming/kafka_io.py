"""Kafka clients for the Python side (the telemetry producer, reading a topic back) and how Spark's
`kafka` source reads the telemetry topic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from infra.endpoints import admin_client, require_kafka
from infra.exceptions import ServiceError
from infra.logs import KAFKA_CLIENT_LOG
from infra.probes import PROBE_TIMEOUTS
from infra.settings import Settings
from infra.waiting import wait_until

KAFKA_FETCH_MAX_WAIT_MS = 5


def telemetry_producer(settings: Settings) -> Producer:
    """A producer that never loses or duplicates an acknowledged event."""
    return Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "logger": KAFKA_CLIENT_LOG,
            "acks": "all",
            "enable.idempotence": True,
            # Batch hard: a throughput producer on two cores, not a latency one.
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            "message.timeout.ms": 60_000,
        }
    )


def require_broker(settings: Settings) -> None:
    """Fail with one line when the broker is down or has no telemetry topic."""
    require_kafka(settings)
    try:
        topics = admin_client(settings).list_topics(timeout=PROBE_TIMEOUTS[-1]).topics
    except KafkaException as exc:
        raise ServiceError(f"Kafka at {settings.kafka.bootstrap} does not answer: {exc.args[0].str()}") from None
    if settings.topic.telemetry not in topics:
        raise ServiceError(f'topic "{settings.topic.telemetry}" does not exist; `warden up` creates it')


@dataclass
class DeliveryCounter:
    """Counts acknowledged and failed deliveries; the producer calls it from `poll`/`flush`."""

    delivered: int = 0
    failed: int = 0
    first_error: str | None = None

    def __call__(self, err: KafkaError | None, _msg: object) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        self.first_error = self.first_error or err.str()


def produce_all(
    producer: Producer,
    topic: str,
    keys: Sequence[bytes],
    values: Sequence[bytes],
    on_delivery: Callable[[KafkaError | None, object], None],
) -> None:
    """Queue every record; when the local queue is full, wait for deliveries instead of failing."""
    produce, poll = producer.produce, producer.poll
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                poll(0.05)
    poll(0)


@dataclass
class Offsets:
    """Per-partition offsets of one topic."""

    topic: str
    by_partition: dict[int, int] = field(default_factory=dict)


# The Kafka consumer group of Spark's reads of the telemetry topic (`kafka_source_options`).
READER_GROUP = "streamwarden-telemetry-reader"


def kafka_source_options(settings: Settings) -> dict[str, str]:
    """How Spark's `kafka` source reads the telemetry topic, for the query and its rehearsal."""
    return {
        "kafka.bootstrap.servers": settings.kafka.bootstrap,
        "subscribe": settings.topic.telemetry,
        # A task reads its Kafka partitions one after the other, and each read first waits for
        # the consumer's idle fetch, which the broker holds for this long when no new data comes
        # (500 ms by default: 6 s per batch on a 12-partition topic).
        "kafka.fetch.max.wait.ms": str(KAFKA_FETCH_MAX_WAIT_MS),
        # Spark keeps its executors' Kafka consumers in a pool keyed by group id and partition; by
        # default each query and each read has a group of its own. One group for both: the query
        # that a standby starts reuses the consumers its rehearsal made, where new ones cost its
        # first batch 0.2-0.4 s on a 12-partition topic. Spark only assigns partitions (no group
        # membership, no committed offsets), so drivers sharing the group do not disturb each other.
        "kafka.group.id": READER_GROUP,
    }


def end_offsets(settings: Settings, topic: str) -> Offsets:
    """The high watermark of every partition of `topic`."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap, "group.id": "warden-offsets", "logger": KAFKA_CLIENT_LOG}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        offsets = Offsets(topic)
        for partition in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            offsets.by_partition[partition] = high
        return offsets
    finally:
        consumer.close()


Record = tuple[bytes | None, bytes, dict[str, bytes]]  # key, value, headers


def committed_records(settings: Settings, topic: str, timeout: float = 120.0) -> list[Record]:
    """Every record of `topic` up to its end as of the call, as a read_committed consumer reads
    it: records of aborted transactions are not there, records of committed ones once."""
    ends = end_offsets(settings, topic).by_partition
    consumer = _readback_consumer(settings)
    pending = {partition for partition, end in ends.items() if end > 0}
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in pending])
    records: list[Record] = []

    def read_on() -> bool:
        """Read what came next; whether every partition is read to its end."""
        if pending:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                value = message.value()
                if message.error() is None and value is not None:
                    headers = dict(cast("list[tuple[str, bytes]]", message.headers() or []))
                    records.append((message.key(), value, headers))
            # Positions pass the transactions' control records too, which are never delivered.
            for position in consumer.position([TopicPartition(topic, partition) for partition in pending]):
                if position.offset >= ends[position.partition]:
                    pending.discard(position.partition)
        return not pending

    try:
        wait_until(read_on, timeout=timeout)
    finally:
        consumer.close()
    if pending:
        raise ServiceError(f"read-back of {topic} timed out with partitions {sorted(pending)} unfinished")
    return records


def count_records(settings: Settings, start: Offsets, end: Offsets, timeout: float = 60.0) -> dict[int, int]:
    """Read back every record between two offset snapshots; the count per partition.

    Reads with isolation.level=read_committed, so aborted transactional records are not counted.
    """
    consumer = _readback_consumer(settings)
    pending = {p: end.by_partition[p] for p in end.by_partition if end.by_partition[p] > start.by_partition.get(p, 0)}
    counts = dict.fromkeys(end.by_partition, 0)
    consumer.assign([TopicPartition(end.topic, p, start.by_partition.get(p, 0)) for p in pending])

    def count_on() -> bool:
        """Count what came next; whether every partition is counted to its end."""
        if pending:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                if message.error() is not None:
                    continue
                partition, offset = message.partition(), message.offset()
                if partition in pending and offset is not None and offset < pending[partition]:
                    counts[partition] += 1
                    if offset + 1 >= pending[partition]:
                        del pending[partition]
        return not pending

    try:
        wait_until(count_on, timeout=timeout)
    finally:
        consumer.close()
    if pending:
        raise ServiceError(f"read-back of {end.topic} timed out with partitions {sorted(pending)} unfinished")
    return counts


def _readback_consumer(settings: Settings) -> Consumer:
    """A consumer that reads a topic back as a read_committed application does, committing nothing."""
    return Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": "warden-readback",
            "logger": KAFKA_CLIENT_LOG,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
