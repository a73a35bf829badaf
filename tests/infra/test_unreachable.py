"""A command whose service does not answer says so in one line, naming the service, its address and
what to do, instead of waiting for the client library's retries; the real `warden` against closed
ports on 127.0.0.1. (`warden status` and a service that is down: tests/infra/test_probes.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from infra.cli.main import _lost_connection
from tests.conftest import free_port, run_warden


def _closed() -> str:
    return f"127.0.0.1:{free_port()}"


MLFLOW = "MLFLOW_TRACKING_URI"
KAFKA = "WARDEN_KAFKA_BOOTSTRAP"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("setting", "args", "named"),
    [
        (MLFLOW, ["promote", "--version", "999", "--approve", "--reason", "x"], "mlflow at http://"),
        (MLFLOW, ["promote", "--version", "999", "--reject", "--reason", "x"], "mlflow at http://"),
        (MLFLOW, ["train", "--days", "1"], "mlflow at http://"),
        (KAFKA, ["simulate", "--duration", "1"], "kafka at "),
        (KAFKA, ["stream", "--duration", "5"], "kafka at "),
        ("WARDEN_LAKE_ROOT", ["backfill", "--days", "1"], "the lake's NameNode"),
    ],
)
def test_a_service_that_does_not_answer_is_one_line(setting: str, args: list[str], named: str, tmp_path: Path) -> None:
    address = _closed()
    env = {
        "WARDEN_HOME": str(tmp_path),
        # Only the service under test is unreachable; the others are wherever the settings say.
        setting: {MLFLOW: f"http://{address}", KAFKA: address}.get(setting, f"hdfs://{address}/warden"),
    }
    if setting == "WARDEN_LAKE_ROOT":
        env["WARDEN_HDFS_HTTP_PORT"] = str(free_port())
    result = run_warden(env, *args, timeout=50)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "`warden up" in lines[0], "the line says what to do"
    assert "Traceback" not in result.stderr


def test_a_connection_lost_under_a_client_library_error_is_named_by_its_address() -> None:
    address = _closed()
    with pytest.raises(RuntimeError) as raised:
        try:
            requests.get(f"http://{address}/api/2.0/mlflow/model-versions/get", timeout=5)
        except requests.ConnectionError:
            # What MLflow's client does: its own error, raised while handling the connection's.
            raise RuntimeError("API request failed")  # noqa: B904 - implicit chaining is what is tested
    assert _lost_connection(raised.value) == f"http://{address}"
    assert _lost_connection(ValueError("no connection involved")) is None
