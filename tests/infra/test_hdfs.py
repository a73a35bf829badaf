"""The embedded HDFS (`warden up --lake hdfs`): real NameNode and DataNode processes from Hadoop's
Maven jars; the lake on it through WebHDFS (Python) and Hadoop's client (Spark)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from infra.lake import Lake
from infra.probes import port_is_open
from infra.secrets import mlflow_password
from infra.settings import Settings
from tests.conftest import LOOPBACK, free_port, hdfs_env, listening_addresses, run_warden, settings_for, stack_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def lake_on_hdfs(hdfs: dict[str, str]) -> tuple[dict[str, str], Settings]:
    return hdfs, settings_for(hdfs)


def test_up_starts_a_namenode_and_a_datanode_on_loopback(lake_on_hdfs: tuple[dict[str, str], Settings]) -> None:
    env, settings = lake_on_hdfs
    status = run_warden(env, "status", "--no-settings")
    line = next(line for line in status.stdout.splitlines() if " hdfs " in line)
    assert line.startswith("up") and "1 DataNode" in line, status.stdout
    s = settings
    for port in (
        s.hdfs_namenode[1],
        s.hdfs.http_port,
        s.hdfs.datanode_port,
        s.hdfs.datanode_http_port,
        s.hdfs.datanode_ipc_port,
    ):
        addresses = listening_addresses(port)
        assert addresses and addresses <= LOOPBACK, f"port {port} listens on {addresses}"
    # Formatted once, under WARDEN_HOME.
    assert (settings.home / "hdfs" / "name" / "current" / "VERSION").exists()


def test_the_lake_round_trips_parquet_through_webhdfs_and_spark(
    lake_on_hdfs: tuple[dict[str, str], Settings], spark: SparkSession
) -> None:
    _, settings = lake_on_hdfs
    lake = Lake(settings)
    assert lake.offline_url("devices").startswith(
        f"webhdfs://{settings.hdfs.user}@127.0.0.1:{settings.hdfs.http_port}/warden/"
    )
    ts = [dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, 0, 1, tzinfo=dt.UTC)]
    table = pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "reading": [1.5, 2.5]})
    assert lake.write(table, "roundtrip", "python-{i}.parquet") == 2

    # Spark's own Hadoop client, on the session every test shares (hdfs:// needs no setting of its own).
    from_python = spark.read.parquet(lake.url("roundtrip"))
    assert sorted(str(row["date"]) for row in from_python.collect()) == ["2026-11-30", "2026-12-01"]
    spark.createDataFrame([(3.5,), (4.5,), (5.5,)], ["reading"]).write.mode("overwrite").parquet(lake.url("from_spark"))
    assert sorted(lake.read("from_spark").column("reading").to_pylist()) == [3.5, 4.5, 5.5]
    assert lake.fs.exists("/warden/roundtrip/date=2026-12-01")


def test_an_unreachable_namenode_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    env = {**stack_env(tmp_path / "home"), **hdfs_env()}  # nothing listens on its ports
    result = run_warden(env, "backfill", "--days", "1", "--devices", "2")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert "NameNode" in result.stderr and "does not answer" in result.stderr
    assert "warden up --lake hdfs" in result.stderr
    # No local fallback either: nothing under the home's default lake.
    assert not (tmp_path / "home" / "lake").exists()


def test_a_spark_master_that_does_not_answer_is_one_line(mlflow_server: Settings, tmp_path: Path) -> None:
    """MLflow answers (it is asked first); the master named in the settings does not."""
    master = f"spark://127.0.0.1:{free_port()}"
    env = {
        "WARDEN_HOME": str(tmp_path),
        "WARDEN_LAKE_ROOT": str(tmp_path / "lake"),
        "WARDEN_SPARK_MASTER": master,
        "MLFLOW_TRACKING_PASSWORD": mlflow_password(mlflow_server),
    }
    result = run_warden(env, "train", "--days", "1")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert master in result.stderr and "does not answer" in result.stderr and "--spark-cluster" in result.stderr


@pytest.mark.stops_the_stack
def test_down_stops_both_daemons(lake_on_hdfs: tuple[dict[str, str], Settings]) -> None:
    """Last in the session: it stops the session's HDFS."""
    env, settings = lake_on_hdfs
    pids = [int(p.read_text()) for p in (settings.home / "run").glob("hdfs-*.pid")]
    assert len(pids) == 2
    result = run_warden(env, "down", "--service", "hdfs")
    assert "hdfs" in result.stdout
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    assert not port_is_open("127.0.0.1", settings.hdfs.http_port)
    assert not port_is_open("127.0.0.1", settings.hdfs_namenode[1])
