"""`warden`: the command line. Each command parses its options, calls one function, renders the result."""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlsplit

import click
import requests

from infra.exceptions import WardenError
from infra.logs import configure as configure_logging
from infra.settings import load_settings


class WardenGroup(click.Group):
    """Turns usage errors and WardenErrors into one line and a non-zero exit, never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        verbose = "--verbose" in sys.argv[1:] or os.environ.get("WARDEN_VERBOSE", "").lower() in ("1", "true")
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("warden: interrupted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "warden"
            click.echo(f"{command}: error: {exc.format_message()} (see --help)", err=True)
            sys.exit(2)
        except WardenError as exc:
            if verbose:
                raise
            click.echo(f"warden: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("warden: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            # Each command probes its services before its first call; one that stops answering after
            # that surfaces as its client library's error, with a connection error underneath.
            if verbose or (lost := _lost_connection(exc)) is None:
                raise
            click.echo(
                f"warden: error: the connection to {lost} failed during the command; "
                "is it still running? (`warden status`; --verbose shows where)",
                err=True,
            )
            sys.exit(1)
        # Without standalone mode, click returns a command's `Exit` code instead of exiting.
        sys.exit(result if isinstance(result, int) else 0)


def _lost_connection(exc: BaseException | None) -> str | None:
    """The address of the server whose connection failed under `exc` (its cause or context), if any."""
    while exc is not None:
        if isinstance(exc, requests.ConnectionError) and exc.request is not None and exc.request.url:
            url = urlsplit(exc.request.url)
            return f"{url.scheme}://{url.netloc}"
        exc = exc.__cause__ or exc.__context__
    return None


@click.group(cls=WardenGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--verbose",
    is_flag=True,
    help="Show tracebacks for errors, and the libraries' log lines (Spark, py4j, MLflow, Feast), "
    "which otherwise go to files under $WARDEN_HOME/logs. Same as WARDEN_VERBOSE=true.",
)
@click.pass_context
def cli(context: click.Context, verbose: bool) -> None:
    """streamwarden: real-time anomaly detection on IoT telemetry.

    Kafka, Spark Structured Streaming, Feast, MLflow and Airflow, on one machine by default.
    Settings come from WARDEN_* environment variables (see `warden status`).
    """
    # Read once for the command; the processes it starts get them through `Settings.to_env`.
    settings = load_settings(verbose=True) if verbose else load_settings()
    configure_logging(settings)
    context.obj = settings


def _register() -> None:
    from infra.cli import data, demo, models, stack

    for module in (stack, data, models, demo):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli.main(prog_name="warden")
