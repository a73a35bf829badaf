from pathlib import Path

import pytest

from infra.exceptions import ConfigError
from infra.settings import load_settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("WARDEN_HOME", "WARDEN_KAFKA_BOOTSTRAP", "MLFLOW_TRACKING_URI", "WARDEN_LAKE_ROOT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.kafka.listen == ("127.0.0.1", 9092)
    assert (settings.topic.telemetry, settings.topic.alerts, settings.topic.dlq) == (
        "iot_stream",
        "anomaly_alerts",
        "iot_stream_dlq",
    )
    assert settings.telemetry_partitions == 12
    assert settings.mlflow_listen == ("127.0.0.1", 5000)
    assert settings.home == Path("~/.streamwarden").expanduser()
    assert settings.lake_url == str(settings.home / "lake")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WARDEN_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("WARDEN_LAKE_ROOT", "hdfs://127.0.0.1:8020/warden/")
    monkeypatch.setenv("WARDEN_KAFKA_BOOTSTRAP", "127.0.0.1:19092,127.0.0.1:19093")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:15000/")
    monkeypatch.setenv("WARDEN_TELEMETRY_PARTITIONS", "6")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    settings = load_settings()
    assert settings.home == tmp_path / "h"
    assert settings.lake_url == "hdfs://127.0.0.1:8020/warden"
    assert settings.kafka.listen == ("127.0.0.1", 19092)
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:15000"
    assert settings.telemetry_partitions == 6
    shown = settings.as_dict()
    assert shown["mlflow_password"] == "********"
    assert "s3cret" not in str(shown)
    # Child processes get the same settings back.
    env = settings.to_env()
    assert env["WARDEN_TELEMETRY_PARTITIONS"] == "6"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"


def test_local_lake_root_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WARDEN_LAKE_ROOT", "relative/lake")
    assert load_settings().lake_url == str(tmp_path / "relative" / "lake")


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("WARDEN_TELEMETRY_PARTITIONS", "zero", "WARDEN_TELEMETRY_PARTITIONS"),
        ("WARDEN_TELEMETRY_PARTITIONS", "-3", "WARDEN_TELEMETRY_PARTITIONS"),
        ("WARDEN_KAFKA_BOOTSTRAP", "localhost", "WARDEN_KAFKA_BOOTSTRAP"),
        ("MLFLOW_TRACKING_URI", "ftp://x", "MLFLOW_TRACKING_URI"),
        ("WARDEN_LAKE_ROOT", "s3://bucket/lake", "WARDEN_LAKE_ROOT"),
        ("WARDEN_AIRFLOW_PORT", "70000", "WARDEN_AIRFLOW_PORT"),
        ("WARDEN_SPARK_MASTER", "yarn", "WARDEN_SPARK_MASTER"),
        ("WARDEN_SPARK_MASTER", "spark://127.0.0.1", "WARDEN_SPARK_MASTER"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert named in message
    assert "\n" not in message


def test_hdfs_and_spark_cluster_addresses_come_from_the_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_LAKE_ROOT", "hdfs://127.0.0.1:18020/warden")
    monkeypatch.setenv("WARDEN_HDFS_HTTP_PORT", "19870")
    monkeypatch.setenv("WARDEN_SPARK_MASTER", "spark://127.0.0.1:17077")
    settings = load_settings()
    assert settings.lake_on_hdfs
    assert settings.hdfs_namenode == ("127.0.0.1", 18020)
    assert settings.webhdfs_url == "http://127.0.0.1:19870"
    assert settings.spark.master_listen == ("127.0.0.1", 17077)


def test_a_local_lake_and_spark_keep_the_embedded_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WARDEN_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.delenv("WARDEN_SPARK_MASTER", raising=False)
    settings = load_settings()
    assert not settings.lake_on_hdfs
    assert settings.hdfs_namenode == ("127.0.0.1", 8020)
    assert settings.spark.master_listen == ("127.0.0.1", 7077)


def test_groups_read_the_flat_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_STREAM_MAX_OFFSETS_PER_TRIGGER", "1234")
    monkeypatch.setenv("WARDEN_GATE_MIN_F1", "0.5")
    monkeypatch.setenv("WARDEN_AIRFLOW_SCHEDULES", "false")
    settings = load_settings(stream_lease_seconds=3)
    assert settings.stream.max_offsets_per_trigger == 1234
    assert settings.stream.lease_seconds == 3.0  # an override by its flat name, merged with the environment
    assert settings.gate.min_f1 == 0.5
    assert settings.airflow.schedules is False
    env = settings.to_env()
    assert env["WARDEN_STREAM_MAX_OFFSETS_PER_TRIGGER"] == "1234" and env["WARDEN_AIRFLOW_SCHEDULES"] == "False"
    assert load_settings().stream.lease_seconds == 10.0
    changed = settings.updated(gate_margin=0.5, model_name="other")
    assert (changed.gate.margin, changed.gate.min_f1, changed.model_name) == (0.5, 0.5, "other")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WARDEN_SPARK_DRIVER_MEMORY", "lots"), ("WARDEN_HDFS_HTTP_PORT", "0"), ("WARDEN_GATE_MARGIN", "2")],
)
def test_bad_values_in_a_group_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_a_removed_variable_says_what_replaced_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("WARDEN_RETRAIN_SCHEDULE=\n")
    with pytest.raises(ConfigError, match="WARDEN_RETRAIN_SCHEDULE is no longer read.*WARDEN_AIRFLOW_SCHEDULES"):
        load_settings()


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="WARDEN_STREAM_BATCH_TASK"):
        load_settings(stream_batch_task=2)
