"""Where output goes: our lines on the terminal, the libraries' logs in WARDEN_HOME/logs.

A `warden` command speaks for the product: its progress lines and results. Spark's JVM (through
`infra/log4j2.properties`), py4j, MLflow, Feast, Great Expectations and Python's warnings write
to log files instead, and `warden --verbose` puts them back on the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from infra.settings import PROJECT_ROOT, Settings

# Our packages: their loggers speak on the terminal (a refused model, a failed champion check).
OWN_PACKAGES = ("infra", "pipelines", "features", "models", "streaming")
SPARK_LOG4J_CONFIG = PROJECT_ROOT / "infra" / "log4j2.properties"
# librdkafka's lines (a broker gone, a coordinator loading), as every Kafka client's `logger`:
# they go to the log file with the other libraries', not to the terminal as `%4|...` lines.
KAFKA_CLIENT_LOG = logging.getLogger("librdkafka")


def logs_dir(settings: Settings) -> Path:
    return settings.home / "logs"


def library_log(settings: Settings) -> Path:
    """The log file of the Python libraries' lines (each `warden` process appends to it)."""
    return logs_dir(settings) / "warden.log"


def spark_log(settings: Settings, app_name: str) -> Path:
    """The log file of one Spark application's driver JVM."""
    return logs_dir(settings) / f"spark-{app_name}.log"


def configure(settings: Settings) -> None:
    """Route this process's logging: everything to `library_log`, our packages' lines (or with
    `verbose`, every line) to stderr too."""
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(library_log(settings), delay=True)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(to_file)
    root.setLevel(logging.INFO)
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setFormatter(logging.Formatter("%(message)s"))
    if settings.verbose:
        root.addHandler(to_terminal)
    else:
        for package in OWN_PACKAGES:
            logging.getLogger(package).addHandler(to_terminal)
    logging.captureWarnings(True)


@contextlib.contextmanager
def library_output(settings: Settings) -> Iterator[None]:
    """Send what a library call prints (Feast's coloured materialization lines, its progress
    bars) to `library_log` instead of the terminal, unless `verbose`."""
    if settings.verbose:
        yield
        return
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    with library_log(settings).open("a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


@contextlib.contextmanager
def jvm_launch_output(settings: Settings, app_name: str) -> Iterator[None]:
    """Point this process's stdout and stderr (the file descriptors) at `spark_log` while a driver
    JVM starts: it inherits them, so what the JVM prints itself (its module warnings, Spark's
    launcher lines) and what its Python workers print go to that file, not the terminal."""
    if settings.verbose:
        yield
        return
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with spark_log(settings, app_name).open("ab") as log:
            for fd in saved:
                os.dup2(log.fileno(), fd)
            yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def spark_java_options(settings: Settings, app_name: str) -> str | None:
    """The driver JVM's options that send Spark's log to `spark_log`; None with `verbose` (Spark's
    own console logging)."""
    if settings.verbose:
        return None
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    return f"-Dlog4j2.configurationFile={SPARK_LOG4J_CONFIG} -Dwarden.log.file={spark_log(settings, app_name)}"
