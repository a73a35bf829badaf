"""Baseline: the Quix Streams (3.28) application a user would write, message by message.

Each record is validated (invalid ones go to the dead-letter topic with a `reason` header),
scored on its own with the champion and the Spark job's features (`Scorer.score_one`: the same
formulas on Python floats, and a one-row prediction), and an alert is published when its score
reaches the champion's threshold. Reading the device's statistics from Feast for every message
would dominate the run, so each device's statistics are kept in a dict and read again at most
every 10 s per device (the job reads them once per micro-batch; the store changes every 15
minutes). Each device's last reading is kept in memory. Quix Streams commits offsets every 5 s
after flushing its producer: at-least-once.

    .venv/bin/python bench/baselines/quix.py --from earliest --idle-exit 5 --metrics-file /tmp/quix.jsonl

Topics and services come from the settings: WARDEN_TOPIC_TELEMETRY, WARDEN_TOPIC_ALERTS,
WARDEN_TOPIC_DLQ, WARDEN_KAFKA_BOOTSTRAP, ... The metrics file has a line per second or so of
processing. Stops on SIGTERM or SIGINT with a summary line.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: `bench` is not an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from quixstreams import Application, message_context

from bench.baselines.scoring import Alert, BaselineError, Event, RunLog, Scorer, check_event, load_champion, parse_args
from features.store import online_features
from infra.context import Context
from infra.settings import Settings

REFRESH_SECONDS = 10.0
METRICS_SECONDS = 1.0
# A pause longer than this between two messages ends a metrics interval: intervals hold no idle time.
GAP_SECONDS = 0.5

# (the record's value, the valid event or None, the reject reason or None)
Checked = tuple[bytes | None, Event | None, str | None]


class StatsCache:
    """Each device's online statistics, read from Feast again once older than REFRESH_SECONDS."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.rows: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, device_id: str) -> dict[str, Any]:
        now = time.monotonic()
        cached = self.rows.get(device_id)
        if cached is None or now - cached[0] > REFRESH_SECONDS:
            cached = (now, online_features(self.store, [device_id]).to_dict("records")[0])
            self.rows[device_id] = cached
        return cached[1]


class Meter:
    """Cuts the message-by-message processing into intervals of about a second for the metrics file.

    An interval also ends once no message came for GAP_SECONDS (a watcher thread): the last
    events of a load must be reported without waiting for the next load's first message."""

    def __init__(self, run: RunLog) -> None:
        self.run = run
        self.rows = 0
        self.start = 0.0
        self.last: float | None = None  # when the last message was processed (time.monotonic)
        self._lock = threading.Lock()

    def started(self, _: Any) -> None:
        with self._lock:
            if not self.rows:
                self.start = time.monotonic()

    def processed(self, *_: Any) -> None:
        """Quix Streams' `on_message_processed` callback (topic, partition, offset)."""
        with self._lock:
            self.rows += 1
            self.last = time.monotonic()
            if self.last - self.start >= METRICS_SECONDS:
                self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self.rows and self.last is not None:
            self.run.processed(self.rows, self.start, self.last)
            self.rows = 0

    def watch_idle(self) -> None:
        """Start the thread that ends an interval after GAP_SECONDS without a message."""

        def watch() -> None:
            while True:
                time.sleep(GAP_SECONDS / 5)
                with self._lock:
                    if self.rows and self.last is not None and time.monotonic() - self.last > GAP_SECONDS:
                        self._flush()

        threading.Thread(target=watch, name="meter-idle", daemon=True).start()


class Steps:
    """The per-message functions of the dataframe."""

    def __init__(self, settings: Settings, scorer: Scorer, stats: StatsCache, run: RunLog) -> None:
        self.max_event_bytes = settings.max_event_bytes
        self.scorer = scorer
        self.stats = stats
        self.run = run

    def check(self, value: bytes | None) -> Checked:
        event, reason = check_event(value, self.max_event_bytes)
        if event is None:
            self.run.dead_letters += 1
            return value, None, reason
        context = message_context()
        event["source_partition"] = context.partition
        event["source_offset"] = context.offset
        return value, event, None

    def score(self, event: Event) -> Alert | None:
        alert = self.scorer.score_one(event, self.stats.get(event["device_id"]))
        if alert is not None:
            self.run.alerts += 1
        return alert


def build(app: Application, settings: Settings, steps: Steps, meter: Meter) -> None:
    """The dataframe; Quix Streams runs every dataframe defined on the app."""
    telemetry = app.topic(settings.topic.telemetry, key_deserializer="bytes", value_deserializer="bytes")
    alerts = app.topic(settings.topic.alerts, key_serializer="str", value_serializer="json")  # orjson inside
    dlq = app.topic(settings.topic.dlq, key_serializer="bytes", value_serializer="bytes")

    checked = app.dataframe(telemetry).update(meter.started).apply(steps.check)
    rejected = checked.filter(lambda c: c[2] is not None)
    rejected = rejected.set_headers(lambda value, key, timestamp, headers: [("reason", value[2].encode())])
    rejected.apply(lambda c: c[0]).to_topic(dlq)
    scored = checked.filter(lambda c: c[2] is None).apply(lambda c: steps.score(c[1]))
    scored.filter(lambda alert: alert is not None).to_topic(alerts, key=lambda alert: alert["device_id"])


def stop_when_idle(app: Application, meter: Meter, idle_exit: float) -> None:
    """Stop the app once no message was processed for `idle_exit` seconds after the first one.
    (`app.run(timeout=...)` also counts from the partition assignment, so it stops a run still
    waiting for its first record, and by default it keeps every output in memory.)"""

    def watch() -> None:
        while meter.last is None or time.monotonic() - meter.last < idle_exit:
            time.sleep(0.1)
        app.stop()

    threading.Thread(target=watch, name="idle-exit", daemon=True).start()


def main() -> None:
    args = parse_args("quix", __doc__)
    # Settings from the environment; the context sets what MLflow's client and Feast read (login, store folder).
    ctx = Context.build("bench-quix")
    settings = ctx.settings
    run = RunLog("quix", args.metrics_file)
    try:
        scorer = Scorer(settings, load_champion(ctx.registry))
    except BaselineError as exc:
        sys.exit(f"quix: {exc}")
    steps = Steps(settings, scorer, StatsCache(ctx.feature_store), run)
    meter = Meter(run)
    meter.watch_idle()
    # No step keeps state in Quix Streams' stores, but the app still opens a state folder.
    with tempfile.TemporaryDirectory(prefix="quix-baseline-") as state_dir:
        app = Application(
            broker_address=settings.kafka.bootstrap,
            consumer_group=args.consumer_group,
            auto_offset_reset=args.start,
            state_dir=state_dir,
            on_message_processed=meter.processed,
            loglevel="WARNING",
        )
        build(app, settings, steps, meter)
        if args.idle_exit:
            stop_when_idle(app, meter, args.idle_exit)
        app.run()  # stops on SIGTERM and SIGINT by itself
    meter.flush()
    run.finish()


if __name__ == "__main__":
    main()
