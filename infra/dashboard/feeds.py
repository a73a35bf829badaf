"""What the dashboard shows, read from what the platform already publishes.

Three feeds, each polled off the request path and each able to say plainly why it has nothing:
- the stream's batch records and model events (files under WARDEN_HOME written by `warden stream`);
- the alert topic, read as its consumers read it (read_committed), from a little before its end;
- the registry: the champion and the challenger with their test metrics.

None of them adds work to the stream: they read its files, its topic and MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from infra.exceptions import ServiceError
from infra.logs import KAFKA_CLIENT_LOG
from infra.settings import Settings
from streaming.drivers import active_driver, read_drivers
from streaming.metrics import BatchRecord, metrics_file, model_events_file, parse_batch_record, takeovers_file

log = logging.getLogger(__name__)

RATE_WINDOW_S = 30.0  # the "now" tiles: events in the batches that finished this recently
ALERT_BACKLOG = 50  # per partition: what the page shows right after it starts
LATEST_ALERTS = 25
ALERT_MINUTES = 60


class LinesTail:
    """New lines of a file that another process appends to; starts over if it is replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._inode: int | None = None

    def read(self) -> tuple[list[bytes], bool]:
        """(new complete lines, whether the file was replaced since the last read)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            replaced = self._inode is not None
            self._offset, self._inode = 0, None
            return [], replaced
        replaced = self._inode is not None and (stat.st_ino != self._inode or stat.st_size < self._offset)
        if replaced or self._inode is None:
            self._offset, self._inode = 0, stat.st_ino
        with self.path.open("rb") as stream:
            stream.seek(self._offset)
            chunk = stream.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self._offset += len(complete)
        return complete.splitlines(), replaced


def _json_objects(lines: list[bytes]) -> list[dict[str, Any]]:
    """The lines of a JSON-lines file of events (model events, takeovers) that parse."""
    found = []
    for line in lines:
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


class StreamFeed:
    """The stream's batch records (rates, lag, latency, dead letters) and its model events."""

    def __init__(self, settings: Settings, keep: int = 720) -> None:
        self.settings = settings
        self.batches_file = LinesTail(metrics_file(settings))
        self.events_file = LinesTail(model_events_file(settings))
        self.takeovers_file = LinesTail(takeovers_file(settings))
        self.takeovers: deque[dict[str, Any]] = deque(maxlen=200)
        self.batches: deque[dict[str, Any]] = deque(maxlen=keep)
        self.lag_by_partition: dict[str, int] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=200)
        self.dead_letters: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()

    def poll(self) -> None:
        lines, replaced = self.batches_file.read()
        if replaced:  # a fresh query: the counts start again
            self.batches.clear()
            self.dead_letters.clear()
            self.totals.clear()
            self.lag_by_partition = {}
        for line in lines:
            record = parse_batch_record(line)
            if record is None:
                continue
            self.batches.append(_point(record))
            self.lag_by_partition = record.lag_by_partition
            self.dead_letters.update(record.dead_letters)
            self.totals.update({"input": record.input_rows, "scored": record.scored_rows, "alerts": record.alerts})
        lines, replaced = self.events_file.read()
        if replaced:
            self.events.clear()
        self.events.extend(_json_objects(lines))
        lines, replaced = self.takeovers_file.read()
        if replaced:
            self.takeovers.clear()
        self.takeovers.extend(_json_objects(lines))

    def panel(self) -> dict[str, Any]:
        running = active_driver(self.settings) is not None
        last = self.batches[-1] if self.batches else None
        if running:
            state, message = "running", ""
        elif last is None:
            state, message = "never ran", "The stream has not run yet: start it with `warden stream`."
        else:
            ago = (time.time() - last["t"]) / 60
            state, message = (
                "stopped",
                f"The stream is not running (last batch {ago:,.0f} min ago): start it with `warden stream`.",
            )
        now = time.time()
        recent = [b for b in self.batches if now - b["t"] <= RATE_WINDOW_S]
        return {
            "state": state,
            "message": message,
            "series": list(self.batches),
            "now": {
                "in_per_s": sum(b["input"] for b in recent) / RATE_WINDOW_S,
                "scored_per_s": sum(b["scored"] for b in recent) / RATE_WINDOW_S,
                "lag": last["lag"] if last else None,
                "latency_ms": last["latency_ms"] if last else {},
            },
            "lag_by_partition": self.lag_by_partition,
            "dead_letters": dict(self.dead_letters.most_common()),
            "totals": dict(self.totals),
            "model": {"name": last["model_name"], "version": last["model_version"]} if last else None,
            # Model swaps and refusals, and takeovers by a standby driver: marks on the time axis.
            "markers": sorted([*self.events, *self.takeovers], key=lambda event: float(event["at"])),
            "drivers": [
                {"pid": d.pid, "role": d.role, "since": d.since, "silent_s": round(d.silent_for(now), 1)}
                for d in read_drivers(self.settings)
            ],
            "takeovers": len(self.takeovers),
        }


def _point(record: BatchRecord) -> dict[str, Any]:
    """One batch as a point of the time series (kept small: the page gets the whole series)."""
    scored = record.scored_rows
    # The batch's own scoring rate, as Spark's processedRowsPerSecond is its own processing rate. Over
    # the time since the previous batch finished, the first batch of a run would be 0 and one after an
    # idle wait would be spread over the wait: a burst scored after a pause was drawn at 0.
    seconds = record.batch_duration_ms / 1000
    return {
        "t": record.finished_at or time.time(),
        "batch": record.batch_id,
        "input": record.input_rows or record.num_input_rows,
        "scored": scored,
        "in_per_s": record.input_rows_per_second,
        "scored_per_s": scored / seconds if seconds > 0 else 0.0,
        "lag": record.consumer_lag_records,
        "latency_ms": record.latency_ms,
        "alerts": record.alerts,
        "model_name": record.model_name,
        "model_version": record.model_version,
    }


class BackgroundFeed:
    """A feed that reads in a thread of its own, so that a slow source never holds up the page."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class AlertFeed(BackgroundFeed):
    """The alert topic, read from a little before its end: the newest alerts and a count per minute."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic.alerts
        self.latest: deque[dict[str, Any]] = deque(maxlen=LATEST_ALERTS)
        self.per_minute: Counter[int] = Counter()
        self.problem = "connecting to Kafka"
        self.seen = 0
        super().__init__("alert-feed")

    def panel(self) -> dict[str, Any]:
        now_minute = int(time.time() // 60)
        minutes = [[(m * 60), self.per_minute.get(m, 0)] for m in range(now_minute - ALERT_MINUTES + 1, now_minute + 1)]
        message = self.problem or ("" if self.seen else f'No alerts on topic "{self.topic}" yet.')
        return {
            "available": not self.problem,
            "message": message,
            "topic": self.topic,
            "per_minute": minutes,
            "latest": list(reversed(self.latest)),
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except KafkaException as exc:
                self.problem = f"Kafka at {self.settings.kafka.bootstrap} does not answer ({exc.args[0].str()})."
            except Exception as exc:  # the page must go on whatever the topic holds
                log.exception("reading the alert topic failed")
                self.problem = f'Reading the alert topic "{self.topic}" failed: {type(exc).__name__}.'

            self._stop.wait(5)

    def _consume(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka.bootstrap,
                "group.id": "warden-dashboard",
                "isolation.level": "read_committed",  # an alert of an aborted batch was never sent
                "enable.auto.commit": False,
                "log_level": 0,
                "logger": KAFKA_CLIENT_LOG,
            }
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=5)
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                self.problem = f'The alert topic "{self.topic}" does not exist on {self.settings.kafka.bootstrap}.'
                return
            assignment = []
            for partition in topic.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=5)
                assignment.append(TopicPartition(self.topic, partition, max(low, high - ALERT_BACKLOG)))
            consumer.assign(assignment)
            self.problem = ""
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=1.0):
                    error = message.error()
                    if error is None:
                        self.problem = ""
                        self._add(message)
                    elif error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
                        self.problem = f"Kafka at {self.settings.kafka.bootstrap} does not answer ({error.str()})."
        finally:
            consumer.close()

    def _add(self, message: Any) -> None:
        try:
            alert = json.loads(message.value())
        except ValueError:
            return
        _, stamp_ms = message.timestamp()
        self.seen += 1
        self.per_minute[int(stamp_ms / 1000 // 60)] += 1
        self.latest.append(
            {
                "event_id": alert.get("event_id"),
                "device_id": alert.get("device_id"),
                "event_ts": alert.get("event_ts"),
                "score": alert.get("score"),
                "threshold": alert.get("threshold"),
                "model_version": alert.get("model_version"),
                "source_partition": alert.get("source_partition"),
                "source_offset": alert.get("source_offset"),
                "published_at": stamp_ms / 1000,
            }
        )
        oldest = int(time.time() // 60) - ALERT_MINUTES
        for minute in [m for m in self.per_minute if m < oldest]:
            del self.per_minute[minute]


TEST_METRICS = ("precision", "recall", "f1", "pr_auc")


class RegistryFeed(BackgroundFeed):
    """The champion and the challenger from MLflow, with their test metrics, every few seconds."""

    def __init__(self, settings: Settings, every: float = 10.0) -> None:
        self.settings = settings
        self.every = every
        self.state: dict[str, Any] = {"available": False, "message": "asking MLflow", "versions": []}
        super().__init__("registry-feed")

    def panel(self) -> dict[str, Any]:
        return self.state

    def _run(self) -> None:
        while not self._stop.is_set():
            self.state = self.read()
            self._stop.wait(self.every)

    def read(self) -> dict[str, Any]:
        url = self.settings.mlflow_tracking_uri
        from models import registry

        try:
            # Connected again at each read: MLflow may have been restarted since the last one.
            models = registry.ModelRegistry.connect(self.settings)
        except ServiceError as exc:
            return {"available": False, "message": f"The registry: {exc}.", "versions": []}
        try:
            versions = []
            for alias in (registry.CHAMPION, registry.CHALLENGER):
                info = models.by_alias(alias)
                if info is not None:
                    versions.append(_version(models.client, alias, info))
        except Exception as exc:  # whatever MLflow raises, the panel says it and the page goes on
            log.warning("reading the registry failed: %s", exc)
            return {
                "available": False,
                "message": f"The registry (MLflow at {url}) failed: {type(exc).__name__}.",
                "versions": [],
            }
        message = "" if versions else f'Model "{self.settings.model_name}" has no champion or challenger yet.'
        return {"available": True, "message": message, "model": self.settings.model_name, "versions": versions}


def _version(client: Any, alias: str, info: Any) -> dict[str, Any]:
    from models import registry

    metrics = client.get_run(info.run_id).data.metrics if info.run_id else {}
    tags = client.get_model_version(info.name, info.version).tags or {}
    return {
        "alias": alias,
        "version": info.version,
        "kind": info.kind,
        "threshold": info.threshold,
        "metrics": {name: metrics.get(f"test_{name}") for name in TEST_METRICS},
        "decided_by": tags.get(registry.TAG_DECIDED_BY, ""),
        "decided_at": tags.get(registry.TAG_DECIDED_AT, ""),
    }
