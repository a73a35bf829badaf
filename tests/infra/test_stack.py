"""`warden up | status | down` against the real Kafka, MLflow and Airflow processes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from infra.secrets import mlflow_password
from infra.settings import Settings, load_settings
from infra.stack import manager
from infra.stack.airflow import ADMIN_USER, AirflowStack
from tests.conftest import LOOPBACK, listening_addresses, run_warden, stack_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def full_stack(session_env: dict[str, str], settings: Settings) -> tuple[dict[str, str], Settings]:
    """The session's stack with every default service, started through the CLI as a user would
    (what other modules started already is left alone)."""
    result = run_warden(session_env, "up")
    assert result.returncode == 0, result.stderr
    return session_env, settings


def _pids(settings: Settings) -> list[int]:
    return [int(p.read_text()) for p in (settings.home / "run").glob("*.pid")]


def test_status_probes_every_service(full_stack: tuple[dict[str, str], Settings]) -> None:
    env, settings = full_stack
    result = run_warden(env, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("kafka", "mlflow", "airflow", "dashboard"):
        assert any(line.startswith("up") and name in line for line in result.stdout.splitlines()), result.stdout
    assert settings.dashboard_url in result.stdout
    password = AirflowStack(settings).admin_password()
    assert password and f"{ADMIN_USER} / {password}" in result.stdout
    assert f"mlflow_tracking_uri = {settings.mlflow_tracking_uri}" in result.stdout
    # The suite's stack runs no schedule; status says what Airflow would run by itself.
    assert "Airflow's schedules: off, manual triggers only" in result.stdout
    assert "training lock, now free" in result.stdout


def test_contract_topics_exist_with_their_partitions(full_stack: tuple[dict[str, str], Settings]) -> None:
    _, settings = full_stack
    from infra.endpoints import admin_client

    topics = admin_client(settings).list_topics(timeout=10).topics
    assert len(topics["iot_stream"].partitions) == 12
    assert len(topics["anomaly_alerts"].partitions) == 12
    assert len(topics["iot_stream_dlq"].partitions) == 1


def test_services_listen_on_loopback_only(full_stack: tuple[dict[str, str], Settings]) -> None:
    _, settings = full_stack
    ports = [
        settings.kafka.listen[1],
        settings.kafka.controller_port,
        settings.mlflow_listen[1],
        settings.airflow.port,
        settings.dashboard_port,
    ]
    for port in ports:
        addresses = listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert addresses <= LOOPBACK, f"port {port} listens on {addresses}"
    # Airflow's log servers (8793/8794) would bind every interface: they must not run.
    for port in (8793, 8794):
        assert not ({"00000000", "00000000000000000000000000000000"} & listening_addresses(port))


def test_writes_need_a_login(full_stack: tuple[dict[str, str], Settings]) -> None:
    _, settings = full_stack
    create = f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/experiments/create"
    assert requests.post(create, json={"name": "anonymous"}, timeout=10).status_code == 401
    login = (settings.mlflow_username, mlflow_password(settings))
    assert requests.post(create, json={"name": "with-login"}, auth=login, timeout=10).status_code == 200
    # The server remembers a checked login for a minute; that must let no other password through.
    wrong = (settings.mlflow_username, mlflow_password(settings) + "x")
    assert requests.post(create, json={"name": "wrong-login"}, auth=wrong, timeout=10).status_code == 401
    dags = f"{settings.airflow.url}/api/v2/dags"
    assert requests.get(dags, timeout=10).status_code == 401
    token = requests.post(
        f"{settings.airflow.url}/auth/token",
        json={"username": ADMIN_USER, "password": AirflowStack(settings).admin_password()},
        timeout=10,
    )
    assert token.status_code == 201
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert requests.get(dags, headers=headers, timeout=10).status_code == 200


def test_up_is_idempotent(full_stack: tuple[dict[str, str], Settings]) -> None:
    env, settings = full_stack
    before = sorted(_pids(settings))
    result = run_warden(env, "up")
    assert result.returncode == 0, result.stderr
    assert sorted(_pids(settings)) == before


def test_port_taken_by_another_process_is_named(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env["WARDEN_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
        result = run_warden(env, "up", "--service", "kafka")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("warden: error")]
    assert len(errors) == 1 and f"port {port}" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.stops_the_stack
def test_kafka_data_survives_down_and_up(full_stack: tuple[dict[str, str], Settings]) -> None:
    env, settings = full_stack
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap, "acks": "all"})
    for i in range(25):
        producer.produce(settings.topic.dlq, f"kept-{i}".encode())
    assert producer.flush(30) == 0

    kafka_pid = settings.home / "run" / "kafka.pid"
    assert run_warden(env, "down", "--service", "kafka").returncode == 0
    assert not kafka_pid.exists()
    assert run_warden(env, "up", "--service", "kafka").returncode == 0

    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "survivor"})
    try:
        low, high = _watermarks(consumer, TopicPartition(settings.topic.dlq, 0))
    finally:
        consumer.close()
    assert high - low == 25


_MOVING_LEADERSHIP = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}


def _watermarks(consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
    """As a client would: a retriable error (leadership moving a moment after a restart) is retried."""
    deadline = time.monotonic() + 30
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=10)
            return low, high
        except KafkaException as exc:
            if exc.args[0].code() not in _MOVING_LEADERSHIP or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.stops_the_stack
def test_down_leaves_no_process_behind(full_stack: tuple[dict[str, str], Settings]) -> None:
    env, settings = full_stack
    pids = _pids(settings)
    assert len(pids) == 7  # kafka, mlflow, Airflow's api-server, scheduler, dag-processor, triggerer, the dashboard
    result = run_warden(env, "down")
    assert result.returncode == 0
    assert all(name in result.stdout for name in ("airflow", "kafka", "dashboard"))
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    # Nothing of the group is left either (children such as LocalExecutor workers, uvicorn).
    assert manager.status(settings) and not any(s.health.ok for s in manager.status(settings))
    status = run_warden(env, "status")
    assert status.returncode == 1


def test_purging_kafka_forgets_the_streams_offsets(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    settings = load_settings(home=Path(env["WARDEN_HOME"]))
    (settings.checkpoint_dir / "offsets").mkdir(parents=True)
    (settings.home / "kafka").mkdir()
    (settings.home / "mlflow").mkdir()

    assert run_warden(env, "down", "--service", "mlflow", "--purge").returncode == 0
    assert settings.checkpoint_dir.exists(), "purging MLflow must keep the stream's offsets"
    assert run_warden(env, "down", "--service", "kafka", "--purge").returncode == 0
    assert not (settings.home / "kafka").exists()
    assert not settings.checkpoint_dir.exists()


@pytest.mark.parametrize(
    ("lake_root", "spark_master", "expected"),
    [
        ("", "local[*]", manager.CORE_SERVICES),
        ("hdfs://127.0.0.1:8020/warden", "local[*]", ("hdfs", *manager.CORE_SERVICES)),
        ("hdfs://127.0.0.1:8020/warden", "spark://127.0.0.1:7077", ("hdfs", "spark", *manager.CORE_SERVICES)),
        # Somebody else's cluster: nothing of it to start here.
        ("hdfs://namenode.prod:8020/warden", "spark://spark-master.prod:7077", manager.CORE_SERVICES),
    ],
)
def test_up_starts_hdfs_and_spark_when_the_settings_point_here(
    lake_root: str, spark_master: str, expected: tuple[str, ...]
) -> None:
    settings = load_settings(lake_root=lake_root, spark_master=spark_master)
    assert set(manager.default_services(settings)) == set(expected)
