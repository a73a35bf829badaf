"""Bad input is one line naming the problem and a non-zero exit, never a traceback; the command
line loads only what the command it runs needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_warden

COMMANDS = ["up", "down", "status", "dashboard", "simulate", "backfill", "train", "promote", "stream", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_defaults(command: str) -> None:
    result = run_warden({}, command, "--help")
    assert result.returncode == 0
    assert "Usage: warden " + command in result.stdout
    if command in ("simulate", "backfill", "train", "demo"):
        assert "[default:" in result.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["simulate", "--rate", "fast"], "--rate"),
        (["simulate", "--duration", "-5"], "--duration"),
        (["simulate", "--anomaly-rate", "0.9"], "--anomaly-rate"),
        (["backfill", "--days", "0"], "--days"),
        (["simulate", "--frobnicate"], "--frobnicate"),
        (["launch"], "launch"),
        (["up", "--service", "redis"], "redis"),
        (["train", "--days", "0"], "--days"),
        (["train", "--kind", "svm"], "svm"),
        (["promote", "--version", "3", "--reason", "ok"], "--approve"),
        (["promote", "--version", "3", "--reject", "--override-gate", "--reason", "ok"], "--override-gate"),
    ],
)
def test_bad_input_is_one_line(args: list[str], named: str) -> None:
    result = run_warden({}, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = run_warden({"WARDEN_HOME": str(tmp_path), "WARDEN_TELEMETRY_PARTITIONS": "many"}, "status")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if "WARDEN_TELEMETRY_PARTITIONS" in line
    ]


def test_the_command_line_loads_no_heavy_library_until_a_command_needs_it() -> None:
    # Every `warden` call (`status`, `down`, `--help`) loads the command line: Great Expectations,
    # scikit-learn and the rest there cost 8.8 s a call before they moved into the commands.
    probe = "import sys, infra.cli.main; print(sorted({m.split('.')[0] for m in sys.modules} & {HEAVY}))"
    heavy = {"great_expectations", "sklearn", "feast", "mlflow", "xgboost", "pyarrow", "pandas"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe.replace("{HEAVY}", repr(heavy))],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
