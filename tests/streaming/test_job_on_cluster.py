"""The production shape on one machine: the lake on a real HDFS, the jobs on a real Spark standalone
cluster, no code path special-cased. Training registers a model from the HDFS lake; the stream
scores on the cluster and stays exact through a SIGKILL of its driver and a DataNode restart."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import requests
from confluent_kafka import Producer

from infra.context import Context
from infra.secrets import mlflow_password
from infra.settings import Settings
from infra.stack.kafka import KafkaBroker
from models import registry
from streaming.kafka_io import committed_records
from tests.conftest import DEVICES, WardenProcess, free_port, run_warden, settings_for, spark_cluster_env
from tests.streaming.checks import scored, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 9000
DURING_OUTAGE = 3000


def produce_events(settings: Settings, count: int) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "acks": "all", "enable.idempotence": True})
    now = datetime.now(UTC)
    for i in range(count):
        event = {
            "event_id": f"outage-{i}",
            "device_id": f"dev-{i % DEVICES:05d}",
            "ts": (now + timedelta(milliseconds=i)).isoformat(),
            "temperature": 55.0,
            "humidity": 40.0,
            "pressure": 300.0,
            "vibration": 2.0,
            "voltage": 230.0,
        }
        producer.produce(settings.topic.telemetry, orjson.dumps(event))
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def cluster_env(hdfs: dict[str, str], mlflow_server: Settings) -> Iterator[dict[str, str]]:
    """A Spark cluster of its own beside the session's HDFS, Kafka and MLflow; history on HDFS,
    an XGBoost champion trained on the cluster from it."""
    env = {
        **hdfs,
        **spark_cluster_env(),
        "WARDEN_LAKE_ROOT": hdfs["WARDEN_LAKE_ROOT"].replace("/warden", "/cluster"),
        "MLFLOW_TRACKING_PASSWORD": mlflow_password(mlflow_server),
        "WARDEN_METRICS_PORT": str(free_port()),
        "WARDEN_STREAM_MAX_OFFSETS_PER_TRIGGER": "1500",
        "WARDEN_MODEL_NAME": f"cluster-test-{os.getpid()}",
        "WARDEN_TOPIC_TELEMETRY": "cluster_test_telemetry",
        "WARDEN_TOPIC_ALERTS": "cluster_test_alerts",
        "WARDEN_TOPIC_DLQ": "cluster_test_dlq",
    }
    result = run_warden(env, "up", "--lake", "hdfs", "--spark-cluster", "--service", "spark")
    assert result.returncode == 0, result.stdout + result.stderr
    KafkaBroker(settings_for(env)).ensure_topics()
    try:
        for args in (
            ["backfill", "--days", "2", "--devices", str(DEVICES), "--interval", "120", "--seed", "1"],
            ["train", "--days", "2", "--kind", "xgboost"],
            # The module checks the cluster and the lake on HDFS, not the model: this small one may
            # not beat the per-device z-score, and is approved over the gate, explicitly.
            ["promote", "--version", "1", "--approve", "--override-gate", "--reason", "cluster test", "--by", "pytest"],
        ):
            result = run_warden(env, *args, timeout=900)
            assert result.returncode == 0, result.stdout + result.stderr
        yield env
    finally:
        run_warden(env, "down", "--service", "spark")


def applications(settings: Settings) -> list[str]:
    """Names of the apps the standalone master has run or runs."""
    state = requests.get(f"http://127.0.0.1:{settings.spark.master_ui_port}/json/", timeout=10).json()
    return [app["name"] for app in state["activeapps"] + state["completedapps"]]


def test_training_reads_the_hdfs_lake_and_runs_on_the_cluster(cluster_env: dict[str, str]) -> None:
    settings = settings_for(cluster_env)
    champion = Context.build("warden-tests", settings).registry.by_alias(registry.CHAMPION)
    assert champion is not None and champion.version == "1"
    assert "warden-train" in applications(settings)
    lake = settings.lake_url
    # The training set and the Feast offline source were written to HDFS, nowhere else.
    status = requests.get(f"{settings.webhdfs_url}/webhdfs/v1/cluster?op=LISTSTATUS", timeout=10).json()
    names = {entry["pathSuffix"] for entry in status["FileStatuses"]["FileStatus"]}
    assert {"telemetry", "labels", "devices", "feast", "training_sets"} <= names, (lake, names)
    assert not (settings.home / "lake").exists()


def test_exactly_once_on_the_cluster_through_a_sigkill_and_a_datanode_restart(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    env = cluster_env
    settings = settings_for(env)
    simulated = EVENTS - DURING_OUTAGE
    result = run_warden(
        env, "simulate", "--devices", str(DEVICES), "--events", str(simulated), "--rate", "3000", "--seed", "11"
    )
    assert result.returncode == 0, result.stderr

    first = WardenProcess(env, tmp_path / "first.log", "stream")
    try:
        wait_for(lambda: len(scored(settings)) >= 1500, 420, "the first batches", first)
        time.sleep(1.5)
    finally:
        first.kill()

    second = WardenProcess(env, tmp_path / "second.log", "stream")
    try:
        wait_for(lambda: len(scored(settings)) >= simulated, 420, "the simulated events scored", second)
        datanode = int((settings.home / "run" / "hdfs-datanode.pid").read_text())
        os.kill(datanode, signal.SIGKILL)
        # Events that arrive while the lake has no DataNode: their batch fails, nowhere to write
        # its blocks (sent by hand: the simulator writes its labels to the lake). The DataNode stays
        # down until the failure shows: on a cluster Spark retries a failed task a few times, and
        # the HDFS client retries too, so a short outage can be ridden out without one.
        produce_events(settings, DURING_OUTAGE)
        wait_for(lambda: "restarting from the checkpoint" in second.output(), 300, "a failed batch", second)
        restarted = run_warden(env, "up", "--service", "hdfs")
        assert restarted.returncode == 0, restarted.stderr
        wait_for(lambda: len(scored(settings)) >= EVENTS, 420, f"all {EVENTS:,} events scored", second)
        time.sleep(3)  # a duplicate would show up now
        assert second.proc.poll() is None, "the stream must keep running through the DataNode restart"
    finally:
        second.kill()

    rows = scored(settings)
    assert len(rows) == EVENTS
    assert rows["event_id"].is_unique
    alerts = committed_records(settings, settings.topic.alerts)
    alert_ids = [orjson.loads(value)["event_id"] for _, value, _ in alerts]
    assert len(alert_ids) == len(set(alert_ids)), "an alert was delivered twice"
    assert set(alert_ids) == set(rows.loc[rows["is_alert"], "event_id"])
    assert "warden-stream" in applications(settings)
