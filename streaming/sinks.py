"""The stream's sinks, each idempotent per micro-batch id, so a replayed batch never writes twice.

`foreachBatch` is at-least-once: after a crash Spark runs the last uncommitted batch again,
with the same id and the same offsets. Each sink therefore keys its output by batch id:

- The lake's Delta tables (`scored`, `rejected`): a batch is one Delta commit per table, an
  append. The batch that the checkpoint holds offsets for but no commit when a process starts,
  and any batch id the process wrote before, may replay a batch whose commit a crash left in the
  table: those replace the batch's rows instead (`replaceWhere batch_id = N`) when the table's
  log holds a commit of that batch. Readers see a batch's rows all at once, or not at all.
- Kafka (alerts and dead letters): one transaction per batch, with a stable transactional id.
  The same transaction commits `batch id + 1` as the offset of a bookkeeping consumer group,
  atomically with the records. A replayed batch whose transaction had committed is skipped;
  one whose transaction had not is written again, and read_committed consumers never saw the
  first attempt (a new producer with the same transactional id aborts it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

from infra.exceptions import ServiceError
from infra.lake import PARTITION_COLUMN, table_properties
from infra.logs import KAFKA_CLIENT_LOG
from infra.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}

# Bounds what the driver holds when a batch's alerts or dead letters are read back for Kafka.
ROWS_PER_FILE = 50_000
# Each lake commit of the stream names its batch in Delta's `userMetadata`: "warden-stream batch 12".
BATCH_COMMIT = "warden-stream batch "
_HISTORY_DEPTH = 20
Headers = list[tuple[str, bytes]]


class DeltaBatchWriter:
    """Writes one micro-batch's rows to a Delta table of the lake, once per batch id.

    Which batches may be replays is known without asking the table: Spark runs a batch again only
    after a failure, so only the batch that the checkpoint holds offsets for but no commit when
    the process starts, or a batch id the process wrote before. For the first, the table's newest
    commits tell whether the driver that died had committed that batch (each commit names its
    batch in Delta's `userMetadata`): only then is it replaced. They are asked while the query
    starts (`expect_replay`), so the first batch does not wait for the answer. A driver killed
    during a batch dies before its lake commit more often than after it, and a replacement costs a
    fresh driver seconds (it finds the batch's files in the table's log and rewrites them), so a
    takeover's first batch is an append more often than not.
    Delta's own idempotent writes (`txnAppId`/`txnVersion`) ask the table at every commit, and
    that rebuilds the table's state from its log: 1.3-2.2 s a write here against 0.3 s for an
    append (bench/README.md).
    """

    def __init__(self, spark: SparkSession, lake_url: str) -> None:
        self.spark = spark
        self.lake_url = lake_url.rstrip("/")
        # The batch the query's checkpoint holds offsets for but no commit, which a crash may
        # have left written (`expect_replay`); None when the checkpoint says the next batch is new.
        self.replay: int | None = None
        self._last_written: dict[str, int] = {}
        self._holds_replay: dict[str, Future[bool]] = {}

    def expect_replay(self, batch_id: int | None, tables: Iterable[str]) -> None:
        """The batch the query's checkpoint holds offsets for but no commit (None: none), and
        whether each of `tables` holds it asked now, in the background: a driver that takes the
        query over learns it while its query starts, not in its first batch (0.6-1.6 s here)."""
        self.replay, self._holds_replay = batch_id, {}
        if batch_id is None:
            return
        asking = ThreadPoolExecutor(1, thread_name_prefix="delta-history")
        self._holds_replay = {table: asking.submit(self._committed, table, batch_id) for table in tables}
        asking.shutdown(wait=False)

    def url(self, table: str) -> str:
        return f"{self.lake_url}/{table}"

    def write(self, frame: DataFrame, table: str, batch_id: int) -> None:
        """`frame` must have a `batch_id` column and a `date` (YYYY-MM-DD) column, its partition."""
        writer = (
            frame.write.format("delta")
            .partitionBy(PARTITION_COLUMN)
            .option("maxRecordsPerFile", ROWS_PER_FILE)
            .options(**table_properties(table))  # used only by the write that creates the table
            # A new version of the model's inputs adds its columns to a table written before it
            # (earlier rows read them as null), instead of failing every batch.
            .option("mergeSchema", "true")
        )
        writer = writer.option("userMetadata", f"{BATCH_COMMIT}{batch_id}")
        last = self._last_written.get(table)
        # Noted before the write: a write that fails, even after its commit, is retried as a replace.
        self._last_written[table] = batch_id if last is None else max(last, batch_id)
        if (last is not None and batch_id <= last) or (batch_id == self.replay and self._holds(table, batch_id)):
            writer = writer.mode("overwrite").option("replaceWhere", f"batch_id = {batch_id}")
        else:
            writer = writer.mode("append")
        writer.save(self.url(table))

    def _holds(self, table: str, batch_id: int) -> bool:
        """Whether `table` holds a commit of the replayed batch, as asked by `expect_replay`."""
        asked = self._holds_replay.get(table)
        return asked.result() if asked is not None else self._committed(table, batch_id)

    def _committed(self, table: str, batch_id: int) -> bool:
        """Whether `table` holds a commit of this batch. One driver writes at a time and its
        batches follow each other, so the stream's newest commit tells: only the newest commits
        are read, not the table's files. None of the stream's among them (a table written before
        the commits named their batch, or maintenance commits since): a replace, always safe."""
        started = time.perf_counter()
        try:
            history = self.spark.sql(f"DESCRIBE HISTORY delta.`{self.url(table)}` LIMIT {_HISTORY_DEPTH}")
            tags = history.select("userMetadata").collect()
        except AnalysisException:  # no table yet: its first write creates it
            return False
        newest = next((tag for (tag,) in tags if tag and tag.startswith(BATCH_COMMIT)), None)
        committed = newest is None or int(newest.removeprefix(BATCH_COMMIT)) >= batch_id
        log.info(
            "batch %d may be a replay: %s's newest stream commit is %s (read in %.0f ms): %s",
            batch_id,
            table,
            newest or f"none of the last {_HISTORY_DEPTH}",
            (time.perf_counter() - started) * 1000,
            "replaced" if committed else "appended",
        )
        return committed

    def read_batch(self, table: str, batch_id: int) -> DataFrame:
        """The rows one batch wrote to `table`, without the `date` partition column, a file per
        Spark partition: read with `toLocalIterator`, the driver holds one file's rows at a time."""
        rows = self.spark.read.format("delta").load(self.url(table))
        return rows.where(F.col("batch_id") == F.lit(batch_id)).drop(PARTITION_COLUMN)


class TransactionalKafkaSink:
    """Alerts and dead letters of a batch, in one Kafka transaction, exactly once per batch id."""

    def __init__(self, settings: Settings, query_name: str) -> None:
        self.alerts_topic = settings.topic.alerts
        self.dlq_topic = settings.topic.dlq
        self._bootstrap = settings.kafka.bootstrap
        self._query_name = query_name
        # The bookkeeping group's committed offset on this partition is the next batch id to write.
        self._marker = TopicPartition(settings.topic.alerts, 0)
        self._broker_lost = False
        self._next: int | None = None
        self._producer, self._consumer = self._connect()

    def _connect(self) -> tuple[Producer, Consumer]:
        common = {
            "bootstrap.servers": self._bootstrap,
            "logger": KAFKA_CLIENT_LOG,
            "error_cb": self._on_error,
        }
        producer = Producer(
            {
                **common,
                "transactional.id": f"streamwarden-{self._query_name}",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )
        consumer = Consumer(
            {
                **common,
                "group.id": f"streamwarden-{self._query_name}-batches",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            # Fences a previous instance and aborts whatever transaction it left open.
            producer.init_transactions(60)
        except KafkaException as exc:
            raise ServiceError(f"Kafka transactions unavailable at {self._bootstrap}: {exc}") from None
        return producer, consumer

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._broker_lost = True

    def _reconnect_if_the_broker_went_away(self) -> None:
        """A new producer and consumer if the broker went away since the last transaction.

        After a broker restart, librdkafka's transactional producer can wait forever for the
        group coordinator it had cached, past any timeout (confluentinc/librdkafka#5456, #5511:
        `send_offsets_to_transaction` never returns). A new producer finds the coordinator anew;
        its `init_transactions` fences the old one, and the next batch id is asked again."""
        self._producer.poll(0)  # serves the error callbacks queued since the last call
        if not self._broker_lost:
            return
        log.warning("the broker went away since the last transaction: new Kafka clients for the sink")
        self._consumer.close()
        self._broker_lost, self._next = False, None
        self._producer, self._consumer = self._connect()

    def next_batch_id(self) -> int:
        """The first batch id whose records are not committed yet: asked of the broker once, then
        known, since no other producer can commit under this transactional id after the fencing."""
        if self._next is None:
            committed = Retrying(
                retry=retry_if_exception(_coordinator_moving),
                stop=stop_after_delay(60),
                wait=wait_fixed(0.5),
                reraise=True,
            )(self._consumer.committed, [self._marker], timeout=30)[0]
            self._next = max(committed.offset, 0)
        return self._next

    def publish(
        self,
        batch_id: int,
        alerts: Iterable[tuple[bytes | None, bytes]],
        dead_letters: Iterable[tuple[bytes | None, bytes, Headers]],
    ) -> bool:
        """Write the batch's records in one transaction; False if this batch was already written
        (then neither iterable is read)."""
        self._reconnect_if_the_broker_went_away()
        if batch_id < self.next_batch_id():
            return False
        producer = self._producer
        producer.begin_transaction()
        try:
            for key, value in alerts:
                self._produce(self.alerts_topic, key, value, None)
            for key, value, headers in dead_letters:
                self._produce(self.dlq_topic, key, value, headers)
            producer.send_offsets_to_transaction(
                [TopicPartition(self._marker.topic, self._marker.partition, batch_id + 1)],
                self._consumer.consumer_group_metadata(),
                60,
            )
            producer.commit_transaction(120)
        except BaseException:
            # Whatever failed (the broker, or reading the batch's records back from the lake),
            # the transaction must not stay open: the batch's retry begins a new one.
            try:
                producer.abort_transaction(60)
            except KafkaException as exc:
                log.warning("aborting the transaction of batch %d failed: %s", batch_id, exc)
            raise
        self._next = batch_id + 1
        return True

    def _produce(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(30)


def _coordinator_moving(exc: BaseException) -> bool:
    """The group's coordinator moves or loads for a moment after a broker (re)start."""
    return isinstance(exc, KafkaException) and exc.args[0].code() in _COORDINATOR_MOVING
