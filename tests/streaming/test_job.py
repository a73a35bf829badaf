"""The streaming job end to end: real Kafka, real Spark, real MLflow and Feast, `warden stream`
run as a process. Exactly once through a SIGKILL, hot swap, refused models, stale features."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest
import requests
from confluent_kafka import Producer

from infra.context import Context
from infra.lake import Lake
from infra.settings import Settings
from models import registry
from streaming.kafka_io import committed_records
from tests.conftest import DEVICES, Trained, WardenProcess, run_warden, settings_for, stream_env
from tests.streaming.checks import scored, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def env(trained: Trained, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A home, lake and topics of its own; the session's Random Forest the champion (version 1)."""
    return stream_env(
        trained,
        settings,
        tmp_path_factory.mktemp("stream-home"),
        "stream_test",
        {
            "WARDEN_STREAM_MAX_OFFSETS_PER_TRIGGER": "1500",
            # Batches of up to 1,500: full ones read their alerts back from the lake, smaller ones
            # (the tail of a burst, live events) bring them with the scored write: both paths run.
            "WARDEN_STREAM_INLINE_ALERTS_MAX_ROWS": "1200",
        },
    )


@pytest.fixture(scope="module")
def settings_of(env: dict[str, str]) -> Settings:
    return settings_for(env)


def produce(settings: Settings, values: list[bytes], keys: list[bytes | None]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "acks": "all", "enable.idempotence": True})
    for key, value in zip(keys, values, strict=True):
        producer.produce(settings.topic.telemetry, value, key)
    assert producer.flush(30) == 0


MALFORMED = [
    (b"this is not json", "invalid_json"),
    (b'{"event_id":"m1","device_id":"dev-00001","ts":"2026-11-25T10:00:00Z"}', "missing_field"),
    (
        b'{"event_id":"m2","device_id":"dev-00001","ts":"2026-11-25T10:00:00Z","temperature":"hot",'
        b'"humidity":1,"pressure":1,"vibration":1,"voltage":1}',
        "wrong_type",
    ),
    (
        b'{"event_id":"m3","device_id":"dev-00001","ts":"soon","temperature":1,'
        b'"humidity":1,"pressure":1,"vibration":1,"voltage":1}',
        "bad_timestamp",
    ),
    (
        b'{"event_id":"m4","device_id":"dev-00001","ts":"2026-11-25T10:00:00Z","temperature":1,'
        b'"humidity":150,"pressure":1,"vibration":1,"voltage":1}',
        "out_of_range",
    ),
    # Any bytes a producer can send reach the dead-letter topic and the lake unchanged.
    (b"\xff\xfe\x00\x81 not utf-8 \xc3\x28", "invalid_json"),
    (b"", "invalid_json"),
    (b'{"event_id":"m5","padding":"' + b"x" * 5000 + b'"}', "too_large"),
]


@pytest.fixture(scope="module")
def stream(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, WardenProcess]]:
    holder: dict[str, WardenProcess] = {}
    holder["log_dir"] = tmp_path_factory.mktemp("stream-logs")  # type: ignore[assignment]
    yield holder
    for value in holder.values():
        if isinstance(value, WardenProcess) and value.proc.poll() is None:
            value.kill()


def test_exactly_once_through_a_sigkill(
    env: dict[str, str], settings_of: Settings, stream: dict, tmp_path: Path
) -> None:
    settings = settings_of
    result = run_warden(env, "simulate", "--devices", str(DEVICES), "--events", "6000", "--rate", "6000", "--seed", "7")
    assert result.returncode == 0, result.stderr
    produce(settings, [value for value, _ in MALFORMED], [b"dev-00001"] * len(MALFORMED))

    first = WardenProcess(env, stream["log_dir"] / "first.log", "stream")
    stream["first"] = first  # killed by the fixture if this test fails before it does
    # Kill it once a few batches of 1,500 have committed, most likely inside the next one.
    wait_for(lambda: len(scored(settings)) >= 1500, 300, "the first batches", first)
    time.sleep(1.5)
    first.kill()

    second = WardenProcess(env, stream["log_dir"] / "second.log", "stream")
    stream["running"] = second
    wait_for(lambda: len(scored(settings)) >= 6000, 300, "all 6,000 events scored", second)
    time.sleep(3)  # a duplicate would show up now

    rows = scored(settings)
    assert len(rows) == 6000
    assert rows["event_id"].is_unique
    assert set(rows["model_version"]) == {"1"}
    # Every device was new to the stream in its first batch, which is scored again once their
    # statistics are read: no event of a device the store knows is scored without them.
    assert "missing" not in set(rows["feature_status"])

    letters = committed_records(settings, settings.topic.dlq)
    assert sorted((value, headers["reason"].decode()) for _, value, headers in letters) == sorted(MALFORMED)
    for _, _, headers in letters:
        assert headers["source_topic"] == settings.topic.telemetry.encode()
        assert int(headers["source_offset"]) >= 0 and headers["reason_detail"]

    rejected = Lake(settings).read_table("rejected").to_pandas()
    assert sorted((bytes(v), r) for v, r in zip(rejected["value"], rejected["reason"], strict=True)) == sorted(
        MALFORMED
    )

    alerts = committed_records(settings, settings.topic.alerts)
    alert_ids = [orjson.loads(value)["event_id"] for _, value, _ in alerts]
    assert len(alert_ids) == len(set(alert_ids)), "an alert was delivered twice"
    assert set(alert_ids) == set(rows.loc[rows["is_alert"], "event_id"])
    alert = orjson.loads(alerts[0][1])
    for field in (
        "event_id",
        "device_id",
        "event_ts",
        "scored_at",
        "score",
        "threshold",
        "model_name",
        "model_version",
        "features",
        "source_partition",
        "source_offset",
    ):
        assert field in alert
    assert alert["score"] >= alert["threshold"]


def test_champion_moves_without_restart_and_broken_models_are_refused(
    env: dict[str, str], settings_of: Settings, stream: dict
) -> None:
    settings = settings_of
    running: WardenProcess = stream["running"]
    pid = running.proc.pid
    models = Context.build("warden-tests", settings).registry
    client, name = models.client, models.name
    rf = models.version("1")
    xgb = models.version("2")
    # A version whose artifact is not what its tags say (an RF model tagged xgboost): fails to load.
    mislabeled = models.register(
        f"runs:/{rf.run_id}/model",
        tags={
            registry.TAG_KIND: "xgboost",
            registry.TAG_THRESHOLD: "0.5",
            registry.TAG_FEATURES: client.get_model_version(name, "1").tags[registry.TAG_FEATURES],
        },
    )
    client.set_registered_model_alias(name, registry.CHAMPION, mislabeled.version)
    metrics_url = f"http://127.0.0.1:{env['WARDEN_METRICS_PORT']}/metrics"

    def refusals() -> float:
        text = requests.get(metrics_url, timeout=5).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("warden_stream_model_refusals_total")
        )

    wait_for(lambda: refusals() >= 1, 120, "the mislabeled model to be refused", running)
    before = len(scored(settings))
    run_warden(env, "simulate", "--devices", str(DEVICES), "--events", "1000", "--rate", "5000", "--seed", "8")
    wait_for(lambda: len(scored(settings)) >= before + 1000, 300, "scoring to go on", running)
    assert set(scored(settings)["model_version"]) == {rf.version}, "the refused version must not score"

    # A person promotes the XGBoost version: the same process swaps and scores with it.
    result = run_warden(env, "promote", "--version", xgb.version, "--approve", "--reason", "better", "--by", "pytest")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: f"now scoring with version {xgb.version}" in running.output(), 120, "the swap", running)
    before = len(scored(settings))
    run_warden(env, "simulate", "--devices", str(DEVICES), "--events", "1000", "--rate", "5000", "--seed", "9")
    wait_for(lambda: len(scored(settings)) >= before + 1000, 300, "scoring with the new champion", running)
    rows = scored(settings)
    assert xgb.version in set(rows["model_version"])
    assert running.proc.pid == pid and running.proc.poll() is None
    info = models.version(xgb.version)
    decided = client.get_model_version(name, xgb.version).tags
    assert decided[registry.TAG_DECIDED_BY] == "pytest" and decided[registry.TAG_DECIDED_AT]
    assert models.by_alias(registry.PREVIOUS) is not None
    assert info.kind == "xgboost"


def test_stale_statistics_fall_back_on_the_baseline_and_unknown_devices_are_missing(
    env: dict[str, str], settings_of: Settings, stream: dict
) -> None:
    settings = settings_of
    running: WardenProcess = stream["running"]
    before = set(scored(settings)["event_id"])
    # Devices the store has never seen (missing), then readings hours after the last statistics:
    # their recent window is stale, and the devices' daily baseline stands in.
    run_warden(env, "simulate", "--devices", str(DEVICES + 20), "--events", "600", "--rate", "3000", "--seed", "10")
    later = pd.Timestamp.now("UTC") + pd.Timedelta(hours=5)
    run_warden(
        env,
        "simulate",
        "--devices",
        str(DEVICES),
        "--events",
        "300",
        "--rate",
        "3000",
        "--seed",
        "11",
        "--start",
        later.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    wait_for(lambda: len(set(scored(settings)["event_id"]) - before) >= 900, 300, "900 new events scored", running)
    rows = scored(settings)
    new = rows[~rows["event_id"].isin(before)]
    statuses = new["feature_status"].value_counts().to_dict()
    assert statuses.get("missing", 0) >= 400  # 20 of 30 devices have no statistics
    assert statuses.get("baseline", 0) >= 300
    assert new["score"].notna().all()
    unknown = new["device_id"] >= f"dev-{DEVICES:05d}"
    assert (new.loc[unknown, "feature_status"] == "missing").all()
    # And only they: every device with history, however old, is scored against statistics.
    assert (new.loc[~unknown, "feature_status"] != "missing").all()


def test_an_alert_storm_is_delivered_exactly_once(env: dict[str, str], settings_of: Settings, stream: dict) -> None:
    """Batches in which every event alerts (a fleet-wide fault looks like this): the alerts reach
    Kafka (from the lake a file at a time for full batches), none lost, none twice, and the job goes on."""
    settings = settings_of
    running: WardenProcess = stream["running"]
    now = pd.Timestamp.now("UTC")
    storm = [
        orjson.dumps(
            {
                "event_id": f"storm-{i}",
                "device_id": f"dev-{i % DEVICES:05d}",
                "ts": (now + pd.Timedelta(milliseconds=i)).isoformat(),
                "temperature": 140.0,
                "humidity": 2.0,
                "pressure": 20.0,
                "vibration": 60.0,
                "voltage": 90.0,
            }
        )
        for i in range(4000)
    ]
    produce(settings, storm, [None] * len(storm))
    wait_for(lambda: scored(settings)["event_id"].str.startswith("storm-").sum() >= 4000, 300, "the storm", running)
    rows = scored(settings)
    rows = rows[rows["event_id"].str.startswith("storm-")]
    assert len(rows) == 4000 and rows["is_alert"].mean() > 0.9
    time.sleep(3)  # the batch's transaction commits after its lake writes
    alerts = [orjson.loads(value)["event_id"] for _, value, _ in committed_records(settings, settings.topic.alerts)]
    storm_alerts = [a for a in alerts if a.startswith("storm-")]
    assert len(storm_alerts) == len(set(storm_alerts))
    assert set(storm_alerts) == set(rows.loc[rows["is_alert"], "event_id"])
    assert running.proc.poll() is None


def test_sigterm_finishes_the_batch_and_exits_zero(stream: dict) -> None:
    running: WardenProcess = stream["running"]
    # As `kill PID`, Kubernetes or systemd (KillMode=mixed) do: the main process only.
    os.kill(running.proc.pid, signal.SIGTERM)
    assert running.proc.wait(120) == 0, running.output()[-3000:]
    assert "stopped:" in running.output()


def test_without_a_champion_the_job_waits(env: dict[str, str]) -> None:
    result = run_warden({**env, "WARDEN_MODEL_NAME": "no-such-model"}, "stream", "--duration", "5", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "waiting for a champion" in result.stderr
    assert "stopped before a champion was available" in result.stdout
