"""The process environment the libraries read their configuration from, set in one place.

Spark and the MLflow client take part of their configuration only from environment variables. Each entry point's context (`infra.context.Context.build`) applies these once, before
any of those libraries is used; nothing else in streamwarden writes `os.environ`. The embedded
stack hands the same variables to the processes it starts.
"""

from __future__ import annotations

import os
import sys
import time

from infra.secrets import known_mlflow_password
from infra.settings import Settings

# MLflow's client retries a failed request 7 times with backoff, for about 4 minutes, and waits 120 s
# for each answer: a server that stops during a command would hold it that long. Two retries (about
# 3 s of backoff) and 30 s per answer (a busy server on this machine answers in less) fail in
# seconds. A value set in the environment wins.
_CLIENT_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def mlflow_client_env(settings: Settings) -> dict[str, str]:
    """Environment for any MLflow client process (our CLI, Airflow tasks, the stream). The login
    is the one MLflow was started with; a client never generates a password (a command that needs
    no MLflow must not write one, and the server would refuse a new one anyway)."""
    password = known_mlflow_password(settings)
    return {
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_TRACKING_USERNAME": settings.mlflow_username,
        **({"MLFLOW_TRACKING_PASSWORD": password} if password is not None else {}),
        # MLflow 3 reports usage to its vendor by default; nothing leaves this machine.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # Progress bars of artifact downloads would interleave with the stream's own output.
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # The client prints "View run … at …" after every run; our progress lines name each run once.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        # MLflow attaches a terminal handler of its own at import unless told not to (`infra.logs` routes it).
        "MLFLOW_CONFIGURE_LOGGING": "false",
        **{name: os.environ.get(name, value) for name, value in _CLIENT_RETRIES.items()},
    }


def library_environment(settings: Settings) -> dict[str, str]:
    """What Spark, pyspark and the MLflow client read from the environment, for `settings`."""
    env = {
        # Spark picks a non-loopback address by default; the embedded stack is loopback only.
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        # pyspark turns timestamps into naive local datetimes: make local time UTC, like the session.
        "TZ": "UTC",
        # Python workers (pandas UDFs) run this interpreter, with this venv's packages.
        "PYSPARK_PYTHON": sys.executable,
        **mlflow_client_env(settings),
    }
    if settings.java_home is not None:
        env["JAVA_HOME"] = os.environ.get("JAVA_HOME", str(settings.java_home))
    return env


def apply_library_environment(settings: Settings) -> None:
    """Set this process's environment for `settings` (idempotent); local time becomes UTC."""
    os.environ.update(library_environment(settings))
    time.tzset()
