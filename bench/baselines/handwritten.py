"""Baseline: the consumer loop a user would write by hand with confluent-kafka.

Each poll (`consume`, up to 5000 records) is validated, scored in one vectorized pass with the
champion and the Spark job's features (one Feast read per batch for its devices), and its alerts
and dead letters are produced; offsets are committed after the producer's flush. Delivery is
therefore at-least-once: a crash between flush and commit replays the batch and repeats its
alerts (the Spark job writes each batch's alerts exactly once, in a Kafka transaction).

    .venv/bin/python bench/baselines/handwritten.py --from earliest --idle-exit 5 --metrics-file /tmp/hw.jsonl

Topics and services come from the settings: WARDEN_TOPIC_TELEMETRY, WARDEN_TOPIC_ALERTS,
WARDEN_TOPIC_DLQ, WARDEN_KAFKA_BOOTSTRAP, ... Stops on SIGTERM or SIGINT with a summary line.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: `bench` is not an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from bench.baselines.scoring import BaselineError, RunLog, Scorer, check_event, load_champion, parse_args
from features.store import online_features
from infra.context import Context
from infra.settings import Settings

BATCH = 5000
POLL_SECONDS = 0.05


class HandwrittenConsumer:
    def __init__(self, settings: Settings, scorer: Scorer, store: Any, run: RunLog, start: str, group: str) -> None:
        self.settings = settings
        self.scorer = scorer
        self.store = store
        self.run = run
        self.stopping = False
        self.delivery_error: KafkaError | None = None
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "group.id": group,
                "auto.offset.reset": start,
                "enable.auto.commit": False,
            }
        )
        self.producer = Producer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "acks": "all",
                "linger.ms": 5,
                "on_delivery": self._delivered,
            }
        )

    def _delivered(self, error: KafkaError | None, _: Message) -> None:
        if error is not None:
            self.delivery_error = error

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def loop(self, idle_exit: float) -> None:
        self.consumer.subscribe([self.settings.topic.telemetry])
        last_record: float | None = None
        try:
            while not self.stopping:
                messages = self.consumer.consume(num_messages=BATCH, timeout=POLL_SECONDS)
                now = time.monotonic()
                if messages:
                    self._process(messages, now)
                    last_record = now
                elif idle_exit and last_record is not None and now - last_record >= idle_exit:
                    break
        finally:
            self.consumer.close()

    def _process(self, messages: list[Message], started: float) -> None:
        events = []
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
            event, reason = check_event(message.value(), self.settings.max_event_bytes)
            if reason is not None:
                self.producer.produce(
                    self.settings.topic.dlq, message.value(), message.key(), headers=[("reason", reason.encode())]
                )
                self.run.dead_letters += 1
                continue
            event["source_partition"] = message.partition()
            event["source_offset"] = message.offset()
            events.append(event)
        if events:
            online = online_features(self.store, list({event["device_id"] for event in events}))
            for alert in self.scorer.score(events, online):
                self.producer.produce(self.settings.topic.alerts, orjson.dumps(alert), alert["device_id"].encode())
                self.run.alerts += 1
        self.producer.flush()
        if self.delivery_error is not None:
            # No commit: the batch is read again on restart (at-least-once).
            raise BaselineError(f"producing to Kafka failed: {self.delivery_error}")
        self.consumer.commit(asynchronous=False)
        self.run.processed(len(messages), started, time.monotonic())


def main() -> None:
    args = parse_args("handwritten", __doc__)
    # Settings from the environment; the context sets what MLflow's client and Feast read (login, store folder).
    ctx = Context.build("bench-handwritten")
    settings = ctx.settings
    run = RunLog("handwritten", args.metrics_file)
    try:
        scorer = Scorer(settings, load_champion(ctx.registry))
        baseline = HandwrittenConsumer(settings, scorer, ctx.feature_store, run, args.start, args.consumer_group)
        signal.signal(signal.SIGTERM, baseline.stop)
        signal.signal(signal.SIGINT, baseline.stop)
        baseline.loop(args.idle_exit)
    except (BaselineError, KafkaException) as exc:
        sys.exit(f"handwritten: {exc}")
    run.finish()


if __name__ == "__main__":
    main()
