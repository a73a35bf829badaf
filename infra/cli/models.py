"""`warden train`, `warden promote`, `warden stream`."""

from __future__ import annotations

import getpass

import click

from infra.cli.common import pass_settings
from infra.progress import ProgressLine
from infra.settings import Settings
from models.estimators import MODEL_KINDS


@click.command("train")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Training window: the last D days of labeled history, up to the current hour (UTC).  [default: WARDEN_TRAINING_WINDOW_DAYS, 7]",
)
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(MODEL_KINDS),
    multiple=True,
    help="Model kinds to fit (repeatable). Default: all.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the estimators.")
@pass_settings
def train_command(settings: Settings, days: int | None, kinds: tuple[str, ...], seed: int) -> None:
    """Validate the history, build the training set, train, gate and register a candidate.

    The same steps the Airflow `retrain` DAG runs, without Airflow. A promotable candidate
    becomes `challenger`; decide on it with `warden promote` (or in the Airflow UI).
    """
    from datetime import UTC, datetime

    from infra.endpoints import require_mlflow
    from infra.spark import check_reachable

    if days is not None:
        settings = settings.model_copy(update={"training_window_days": days})
    # Training reaches the registry only after Spark has read and validated the lake: ask it first,
    # even before importing the pipeline (Spark, Great Expectations and scikit-learn take seconds).
    require_mlflow(settings)
    # And the Spark master and the lake's NameNode: one line now, not a failure under step 1's progress line.
    check_reachable(settings)
    from infra.context import Context
    from pipelines.retrain import retrain, window_ending

    window = window_ending(settings, datetime.now(UTC))
    report = retrain(Context.build("warden-train", settings), window, kinds or MODEL_KINDS, seed, ProgressLine("train"))
    click.echo(f"steps ({', '.join(report.usage)}), each its time and peak memory (sampled):")
    for name, usage in report.usage.items():
        click.echo(f"  {name:<14} {usage}")
    for candidate in report.candidates:
        q = candidate.quality
        click.echo(
            f"  {candidate.kind:<14} F1 {q.f1:.3f}  precision {q.precision:.3f}  recall {q.recall:.3f}  "
            f"PR-AUC {q.pr_auc:.3f}  threshold {candidate.threshold:.3f} (F1 {q.best_f1:.3f} at the best one for the test labels)"
        )
    assert report.verdict is not None and report.version is not None  # noqa: S101 - retrain() always fills the report; this narrows its type
    click.echo(f"gate: {report.verdict.summary()}")
    version = report.version.version
    if report.verdict.promotable:
        click.echo(
            f"registered {settings.model_name} version {version} ({report.verdict.candidate.kind}) as challenger; "
            f"decide with `warden promote --version {version} --approve|--reject --reason ...`"
        )
    else:
        click.echo(f"registered {settings.model_name} version {version} tagged not promotable; the champion stays")


@click.command("promote")
@click.option("--version", required=True, help="Registered version to decide on.")
@click.option("--approve/--reject", "approve", required=True, help="Approve (becomes champion) or reject.")
@click.option("--reason", required=True, help="Why; recorded on the version.")
@click.option(
    "--by",
    "decided_by",
    default=getpass.getuser,
    show_default="the current user",
    help="Who decides; recorded on the version.",
)
@click.option(
    "--override-gate",
    is_flag=True,
    help="Approve a version the gate refused; the override is recorded on it with who decided and why.",
)
@pass_settings
def promote_command(
    settings: Settings, version: str, approve: bool, reason: str, decided_by: str, override_gate: bool
) -> None:
    """Approve or reject a model version; the running stream follows the champion alias."""
    from pipelines.promotion import decide, outcome

    if override_gate and not approve:
        raise click.UsageError("--override-gate goes with --approve: a rejection needs no override")
    from infra.context import Context

    registry = Context.build("warden-promote", settings).registry
    info = decide(registry, version, approve, decided_by, reason, override_gate)
    click.echo(
        f"{settings.model_name} version {info.version} ({info.kind}) {outcome(info, approve)}; decided by {decided_by}"
    )


@click.command("stream")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds. Default: run until SIGTERM or Ctrl-C.",
)
@click.option(
    "--standby",
    is_flag=True,
    help="Run as a standby driver: get ready (Spark session, champion loaded) and take the query over the "
    "moment the active driver dies, or once it has been silent for WARDEN_STREAM_LEASE_SECONDS (it is killed "
    "first). Without it, a query already running on the checkpoint is an error.",
)
@pass_settings
def stream_command(settings: Settings, duration: float | None, standby: bool) -> None:
    """Run the streaming job: Kafka → validate → features → champion model → alerts and lake.

    Waits for a champion model if there is none. SIGTERM finishes the batch in flight,
    commits it and exits 0. One driver runs the query; `--standby` drivers wait beside it.
    """
    from infra.context import Context
    from streaming.job import QUERY_NAME, run_stream

    ctx = Context.build(QUERY_NAME, settings, with_kafka=True)
    report = run_stream(ctx, duration=duration, progress=ProgressLine("stream"), standby=standby)
    click.echo(
        f"{report.exit_reason}: {report.batches} batches, {report.rows:,} events, {report.alerts:,} alerts, "
        f"{report.dead_letters:,} dead letters, {report.swaps} model swaps ({report.refusals} refused), "
        f"{report.restarts} restarts after a failed batch, in {report.seconds:.0f} s"
    )


COMMANDS = [train_command, promote_command, stream_command]
