"""`warden stream`: the long-running Spark Structured Streaming job.

Kafka (Spark's own `kafka` source, offsets in the query's checkpoint) → parse and validate in
Spark SQL → Feast online statistics + in-batch features → the `champion` model, re-resolved
every few seconds and swapped without a restart → alerts and dead letters to Kafka (one
transaction per batch), telemetry, scored rows and rejects to the lake (idempotent per batch).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException, StreamingQueryException

from infra.context import Context
from infra.exceptions import ConfigError, ServiceError
from infra.progress import ProgressLine
from infra.settings import Settings
from models.loader import ChampionWatcher, ScoringModel
from models.registry import VersionInfo
from streaming.batch import LAKE_TABLES, BatchProcessor
from streaming.drivers import Driver
from streaming.exceptions import QueryGaveUp, StopRequested
from streaming.kafka_io import kafka_source_options, require_broker
from streaming.metrics import REFUSAL, SWAP, ProgressListener, StreamMetrics
from streaming.parse import parse_events
from streaming.rehearsal import rehearse
from streaming.sinks import DeltaBatchWriter, TransactionalKafkaSink
from streaming.state import LastReadings
from streaming.statistics import OnlineStatistics

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)
QUERY_NAME = "warden-stream"


@dataclass
class StreamReport:
    batches: int = 0
    rows: int = 0
    alerts: int = 0
    dead_letters: int = 0
    swaps: int = 0
    refusals: int = 0
    restarts: int = 0
    seconds: float = 0.0
    exit_reason: str = ""


def run_stream(
    ctx: Context,
    duration: float | None = None,
    progress: ProgressLine | None = None,
    stop: threading.Event | None = None,
    standby: bool = False,
) -> StreamReport:
    """Run until SIGTERM/SIGINT, `stop`, or `duration` seconds; finish the batch in flight, exit.

    A `standby` driver gets ready (session, champion, plan) and waits to take the query over
    from the active one (`streaming.drivers`); without it, a query already running on the
    checkpoint is an error."""
    progress = progress or ProgressLine("stream")
    stop = stop or threading.Event()
    require_broker(ctx.settings)
    with Driver(ctx.settings) as driver:
        if not standby:
            driver.take_now()
        return StreamJob(ctx, driver, duration, progress, stop).run()


class StreamJob:
    """One driver's run of the query: wait for a champion, start the query (a standby first
    rehearses and waits to take it over), supervise it (a failed query restarts from its
    checkpoint), stop it (the batch in flight finishes, no other starts)."""

    def __init__(
        self, ctx: Context, driver: Driver, duration: float | None, progress: ProgressLine, stop: threading.Event
    ) -> None:
        self.ctx = ctx
        self.settings = settings = ctx.settings
        self.driver = driver
        self.duration = duration
        self.progress = progress
        self.stop_requested = stop
        self.report = StreamReport()
        self.started = time.monotonic()
        self.metrics = StreamMetrics(settings, serve=driver.active)
        # The sink of the query that runs: connected while the query plans its first batch. Its
        # `init_transactions` fences any earlier driver of the query on the alert topics and waits
        # for the broker to abort what that one left open: off the path of a takeover's first batch.
        self._connecting = ThreadPoolExecutor(1, thread_name_prefix="kafka-sink")
        self._sink: Future[TransactionalKafkaSink] | None = None
        self._watcher: ChampionWatcher | None = None
        self._statistics: OnlineStatistics | None = None

    def run(self) -> StreamReport:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        try:
            spark, watcher = self._wait_for_champion()
            if watcher.current is None or self.stop_requested.is_set():
                self.report.exit_reason = "stopped before a champion was available"
                return self.report
            self._watcher = watcher
            watcher.start()
            processor, events = self._prepare(spark, watcher)
            query = self._start(spark, processor, events)
            if query is None:
                self.report.exit_reason = "stopped as a standby"
                return self.report
            query = self._supervise(query, processor, events, watcher)
            self._stop(query, processor)
            self.report.exit_reason = "stopped"
            return self.report
        finally:
            self._close()

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stop_requested.set()

    def _out_of_time(self) -> bool:
        return self.duration is not None and time.monotonic() - self.started > self.duration

    def _swapped(self, old: ScoringModel | None, new: ScoringModel) -> None:
        self.report.swaps += 1
        if self.driver.active:  # a standby follows the champion too, but the active driver tells of it
            self.metrics.record_model_event(SWAP, new.version, old.version if old else "")
        self.progress.update(
            f"now scoring with version {new.version}" + (f" (was {old.version})" if old else ""), force=True
        )

    def _refused(self, info: VersionInfo, why: str) -> None:
        self.report.refusals += 1
        if self.driver.active:
            self.metrics.record_model_event(REFUSAL, info.version, reason=why)
        self.progress.update(f"refused version {info.version}: {why}", force=True)

    def _wait_for_champion(self) -> tuple[SparkSession, ChampionWatcher]:
        """The session, and a watcher of the champion alias (not yet following it) that holds a
        model unless the job was stopped first."""
        settings = self.settings
        # Before Spark: a registry that does not answer fails the command in a second, not after the JVM's start.
        registry = self.ctx.registry
        spark = stream_session(self.ctx)
        watcher = ChampionWatcher(spark, registry, settings.champion_poll_seconds, self._swapped, self._refused)
        while not self.stop_requested.is_set():
            watcher.check()
            if watcher.current is not None:
                break
            self.progress.update(
                f'waiting for a champion: no loadable version under alias "champion" of {settings.model_name}; '
                "train one (`warden train`) and promote it (`warden promote`)",
                force=True,
            )
            if self._out_of_time():
                self.stop_requested.set()
                break
            self.stop_requested.wait(settings.champion_poll_seconds)
        return spark, watcher

    def _prepare(self, spark: SparkSession, watcher: ChampionWatcher) -> tuple[BatchProcessor, DataFrame]:
        """The batch function and the parsed stream it is handed, ready to start."""
        settings = self.settings
        self._statistics = OnlineStatistics(self.ctx.feature_store, settings.stream.statistics_refresh_seconds)
        self._statistics.start()
        processor = BatchProcessor(
            settings,
            spark,
            self._statistics,
            lambda: watcher.current,
            DeltaBatchWriter(spark, settings.lake_url),
            LastReadings(spark, str(settings.checkpoint_dir / "last_readings")),
            self._kafka_sink,
            self.metrics,
        )
        self.driver.watch(processor.running_for)
        spark.streams.addListener(ProgressListener(self.metrics))
        # Parsed and validated on the streaming DataFrame: the plan is built and analysed once, not
        # in every batch.
        events = parse_events(telemetry_records(spark, settings), settings.max_event_bytes)
        return processor, events

    def _kafka_sink(self) -> TransactionalKafkaSink:
        if self._sink is None:  # the batch function runs only while a query does
            raise RuntimeError("no Kafka sink: no query was started")
        return self._sink.result()

    def _close_sink(self) -> None:
        # A sink that never connected (the broker away) has nothing to close.
        if self._sink is not None and self._sink.exception() is None:
            self._sink.result().close()
        self._sink = None

    def _start_query(self, processor: BatchProcessor, events: DataFrame) -> StreamingQuery:
        query = (
            events.writeStream.queryName(QUERY_NAME)
            .foreachBatch(processor)
            .option("checkpointLocation", str(self.settings.checkpoint_dir))
            .trigger(processingTime=f"{self.settings.stream.trigger_seconds} seconds")
            .start()
        )
        # The transactional id follows the query's id, kept in its checkpoint across restarts.
        self._sink = self._connecting.submit(TransactionalKafkaSink, self.settings, str(query.id))
        return query

    def _start(self, spark: SparkSession, processor: BatchProcessor, events: DataFrame) -> StreamingQuery | None:
        """The running query; None when the job stopped as a standby, before it took the query over."""
        standby = not self.driver.active
        takeover = None
        if standby:
            rehearse(self.settings, spark, processor, processor.readings, self.progress)
            takeover = self.driver.wait_to_take_over(self.stop_requested, self.progress)
            if not self.driver.active:
                return None
        processor.tables.expect_replay(unfinished_batch(self.settings), LAKE_TABLES)
        query = self._start_query(processor, events)
        if standby:  # what the first batch does not need comes after the query's start
            self.metrics.serve()
        if takeover is not None:
            self.metrics.record_takeover(takeover)
            self.progress.update(
                f"took the query over from driver pid {takeover.previous} ({takeover.cause}, last heard of "
                f"{takeover.detected_at - takeover.last_heartbeat:.1f} s ago), query started in "
                f"{time.time() - takeover.detected_at:.2f} s",
                force=True,
            )
        return query

    def _supervise(
        self, query: StreamingQuery, processor: BatchProcessor, events: DataFrame, watcher: ChampionWatcher
    ) -> StreamingQuery:
        """Until a stop or the duration: show progress, restart a failed query from its checkpoint
        (QueryGaveUp after WARDEN_STREAM_MAX_RESTARTS failures in a row). The query running last."""
        settings, progress, stop = self.settings, self.progress, self.stop_requested
        failures = 0  # consecutive failed attempts; a committed batch resets it
        batches_at_start = 0
        while not stop.is_set():
            if query.isActive:
                with contextlib.suppress(StreamingQueryException):  # handled below, once it is inactive
                    query.awaitTermination(1.0)  # type: ignore[arg-type]
                if self._out_of_time():
                    stop.set()
                _show(progress, query.lastProgress, watcher)
                continue
            failure = query.exception()
            raised = processor.take_failure()
            if failure is None or isinstance(raised, StopRequested):
                break
            # A failed batch (a DataNode or the online store gone for a moment) ends the query;
            # its checkpoint makes a restart replay that batch, and the sinks keep replays exact.
            reason = failure_reason(raised, failure)
            failures = 1 if self.metrics.totals["batches"] > batches_at_start else failures + 1
            if failures > settings.stream.max_restarts:
                raise QueryGaveUp(f"the streaming query failed {failures} times in a row, giving up: {reason}")
            wait = min(2.0**failures, 30.0)
            self.report.restarts += 1
            progress.update(
                f"batch failed: {reason}; restarting from the checkpoint in {wait:.0f} s "
                f"(attempt {failures}/{settings.stream.max_restarts})",
                force=True,
            )
            if stop.wait(wait) or not _wait_for_broker(settings, stop, progress):
                break
            self._close_sink()  # a producer that lived through the failure may be unusable: a new one, fenced anew
            batches_at_start = self.metrics.totals["batches"]
            query = self._start_query(processor, events)
        return query

    @staticmethod
    def _stop(query: StreamingQuery, processor: BatchProcessor) -> None:
        """Let the batch in flight finish and commit its sinks, refuse to start another, stop."""
        processor.stopping.set()
        with processor.busy:
            pass
        if query.isActive:
            query.stop()

    def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._statistics is not None:
            self._statistics.stop()
        self._close_sink()
        self._connecting.shutdown()
        totals = self.metrics.totals
        self.report.seconds = time.monotonic() - self.started
        self.report.batches = totals["batches"]
        self.report.rows = totals["rows"]
        self.report.alerts = totals["alerts"]
        self.report.dead_letters = totals["dead_letters"]


def unfinished_batch(settings: Settings) -> int | None:
    """The batch that the query's checkpoint holds offsets for but no commit: the one a query
    started on it runs again first (Spark's offset and commit logs keep a file per batch id)."""

    def newest(log: str) -> int:
        folder = settings.checkpoint_dir / log
        return (
            max((int(path.name) for path in folder.iterdir() if path.name.isdigit()), default=-1)
            if folder.exists()
            else -1
        )

    planned, committed = newest("offsets"), newest("commits")
    return planned if planned > committed else None


def _wait_for_broker(settings: Settings, stop: threading.Event, progress: ProgressLine) -> bool:
    """Until the broker answers again (a failed batch is often its absence: a restart must not
    count against the job while it is away); False when the job is stopped first."""
    while True:
        try:
            require_broker(settings)
            return True
        except ServiceError as exc:
            progress.update(f"waiting for the broker before restarting the query: {exc}", force=True)
        if stop.wait(2.0):
            return False


def stream_session(ctx: Context) -> SparkSession:
    """The context's Spark session (with the Kafka connector), set for small, frequent batches."""
    if not ctx.with_kafka:
        raise ConfigError("the stream's context needs Spark's Kafka connector: Context.build(..., with_kafka=True)")
    settings, spark = ctx.settings, ctx.spark
    # Adaptive execution re-plans every stage: seconds of fixed cost on batches of a few thousand
    # rows. A shuffle (the features' per-device window) makes as many tasks as the batch has.
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    spark.conf.set("spark.sql.shuffle.partitions", str(settings.stream.batch_tasks))
    return spark


def telemetry_records(spark: SparkSession, settings: Settings) -> DataFrame:
    """The telemetry topic's raw records as a streaming DataFrame, read as the job reads them."""
    source = (
        spark.readStream.format("kafka")
        .options(**kafka_source_options(settings))
        .option("startingOffsets", settings.stream.starting_offsets)
        .option("maxOffsetsPerTrigger", settings.stream.max_offsets_per_trigger)
        .option("failOnDataLoss", str(settings.stream.fail_on_data_loss).lower())
        .load()
    )
    # Few tasks: per-task overhead, not work, dominates small batches, and with a single one the
    # context join and the per-device features need no shuffle.
    return source.coalesce(settings.stream.batch_tasks)


def failure_reason(raised: BaseException | None, failure: StreamingQueryException) -> str:
    """What made the query fail, in a line: the exception a batch raised, for a Java failure its
    innermost cause (what went wrong, not the calls that wrapped it); else, when the query failed
    outside a batch, Spark's error condition and message."""
    if isinstance(raised, Py4JJavaError):
        cause = raised.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        line = str(cause.toString())
    elif isinstance(raised, PySparkException):  # a Spark error converted for Python: its condition leads
        # Only an error with a condition (a SparkThrowable) has a message of its own to give.
        line = f"{type(raised).__name__}: {raised.getMessage() or _first_line(raised)}"
    elif raised is not None:
        line = f"{type(raised).__name__}: {raised}"
    else:
        line = failure.getMessage()  # "[CONDITION] what happened"
    line = " ".join(line.split())
    # The head names the exception, the tail what it says; the middle is mostly a path.
    return line if len(line) <= 240 else f"{line[:100]} … {line[-130:]}"


def _first_line(error: BaseException) -> str:
    """The first line of what an exception says (a converted Spark error appends its JVM stack)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _show(progress: ProgressLine, last: dict | None, watcher: ChampionWatcher) -> None:  # type: ignore[type-arg]
    if not last:
        return
    version = watcher.current.version if watcher.current else "-"
    progress.update(
        f"batch {last['batchId']}: {last['numInputRows']:,} rows, "
        f"{last.get('processedRowsPerSecond', 0.0):,.0f} rows/s, model v{version}"
    )
