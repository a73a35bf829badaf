"""`warden train`, `warden promote`, `warden stream`."""

from __future__ import annotations

import getpass
from datetime import timedelta

import click

from infra.progress import ProgressLine
from infra.settings import get_settings
from models.estimators import MODEL_KINDS


@click.command("train")
@click.option("--days", type=click.IntRange(min=1), default=7, help="Training window: the last D days of labeled history, up to the current hour (UTC).")
@click.option("--kind", "kinds", type=click.Choice(MODEL_KINDS), multiple=True, help="Model kinds to fit (repeatable). Default: all.")
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed of the estimators.")
def train_command(days: int, kinds: tuple[str, ...], seed: int) -> None:
    """Refresh features, train, evaluate on the test window, register the best as challenger.

    The same pipeline the Airflow `retrain` DAG runs, without Airflow.
    """
    from infra.spark import spark_session
    from pipelines.feature_refresh import refresh_features
    from pipelines.training import default_window, train

    settings = get_settings()
    window = default_window(days)
    spark = spark_session(settings, "warden-train", with_kafka=False)
    refresh_features(
        settings, spark, window.end, window.start - timedelta(minutes=settings.feature_window_minutes),
        ProgressLine("features"),
    )
    report = train(settings, spark, window, kinds or MODEL_KINDS, seed)
    for candidate in report.candidates:
        q = candidate.quality
        click.echo(
            f"  {candidate.kind:<14} F1 {q.f1:.3f}  precision {q.precision:.3f}  recall {q.recall:.3f}  "
            f"PR-AUC {q.pr_auc:.3f}  threshold {candidate.threshold:.3f}"
        )
    assert report.registered is not None
    click.echo(
        f"registered {settings.model_name} version {report.registered.version} ({report.best.kind}) as challenger; "
        f"promote it with `warden promote --version {report.registered.version} --approve --reason ...`"
    )


@click.command("promote")
@click.option("--version", required=True, help="Registered version to decide on.")
@click.option("--approve/--reject", "approve", required=True, help="Approve (becomes champion) or reject.")
@click.option("--reason", required=True, help="Why; recorded on the version.")
@click.option("--by", "decided_by", default=getpass.getuser, show_default="the current user", help="Who decides; recorded on the version.")
def promote_command(version: str, approve: bool, reason: str, decided_by: str) -> None:
    """Approve or reject a model version; the running stream follows the champion alias."""
    from pipelines.promotion import decide

    settings = get_settings()
    info = decide(settings, version, approve, decided_by, reason)
    verdict = "is now champion" if approve else "rejected"
    click.echo(f"{settings.model_name} version {info.version} ({info.kind}) {verdict}; decided by {decided_by}")


@click.command("stream")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, help="Stop after this many seconds. Default: run until SIGTERM or Ctrl-C.")
def stream_command(duration: float | None) -> None:
    """Run the streaming job: Kafka → validate → features → champion model → alerts and lake.

    Waits for a champion model if there is none. SIGTERM finishes the batch in flight,
    commits it and exits 0.
    """
    from streaming.job import run_stream

    report = run_stream(get_settings(), duration=duration, progress=ProgressLine("stream"))
    click.echo(
        f"{report.exit_reason}: {report.batches} batches, {report.rows:,} events, {report.alerts:,} alerts, "
        f"{report.dead_letters:,} dead letters, {report.swaps} model swaps ({report.refusals} refused) "
        f"in {report.seconds:.0f} s"
    )


COMMANDS = [train_command, promote_command, stream_command]
