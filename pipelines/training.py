"""Train both model kinds on the lake's history, judge them on the test window, register the best.

The better candidate by F1 on the test window becomes a new registered version under the
`challenger` alias; a person decides its promotion (`pipelines.promotion`).
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from features.logic import FEATURE_COLUMNS
from infra.exceptions import WardenError
from infra.progress import ProgressLine
from infra.settings import PROJECT_ROOT, Settings
from models import registry
from models.estimators import LABEL, RANDOM_FOREST, XGBOOST, fit_random_forest, fit_xgboost, positive_weight
from models.evaluation import Quality, choose_threshold, evaluate
from models.scoring import SCORE, random_forest_scorer, xgboost_scorer
from pipelines.training_set import Window, build_training_set

ARTIFACT_PATH = "model"


class TrainingError(WardenError):
    """The data cannot train a model (too little of it, no anomalies in a split)."""


@dataclass(frozen=True)
class Candidate:
    kind: str
    run_id: str
    model_uri: str
    threshold: float
    quality: Quality


@dataclass
class TrainingReport:
    window: Window
    rows: dict[str, int]
    candidates: list[Candidate] = field(default_factory=list)
    registered: registry.VersionInfo | None = None

    @property
    def best(self) -> Candidate:
        return max(self.candidates, key=lambda c: (c.quality.f1, c.quality.pr_auc))


def git_commit() -> str:
    try:
        out = subprocess.run(  # noqa: S603
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def default_window(days: int, end: datetime | None = None) -> Window:
    end = end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return Window(end - timedelta(days=days), end)


def _scored(frame: DataFrame) -> pd.DataFrame:
    return frame.select(LABEL, SCORE, "anomaly_type").toPandas()


def train(
    settings: Settings,
    spark: SparkSession,
    window: Window,
    kinds: tuple[str, ...] = (RANDOM_FOREST, XGBOOST),
    seed: int = 0,
    progress: ProgressLine | None = None,
) -> TrainingReport:
    """Build the training set, fit each kind, evaluate on the test window, register the best."""
    progress = progress or ProgressLine("train")
    progress.update(f"building the training set for {window}", force=True)
    data = build_training_set(settings, spark, window).cache()
    counts = {row["split"]: (row["count"], row["positives"]) for row in _split_counts(data)}
    for split in ("train", "validation", "test"):
        rows, positives = counts.get(split, (0, 0))
        if rows == 0 or positives == 0:
            raise TrainingError(
                f"the {split} split of {window} has {rows} rows and {positives} anomalies; "
                "train on a longer window of labeled history"
            )
    report = TrainingReport(window, {split: rows for split, (rows, _) in counts.items()})
    train_split = data.where("split = 'train'")
    validation, test = data.where("split = 'validation'"), data.where("split = 'test'")
    pos_weight = (counts["train"][0] - counts["train"][1]) / counts["train"][1]
    client = registry.configure_mlflow(settings)
    import mlflow

    mlflow.set_experiment(settings.model_name)
    commit = git_commit()
    for kind in kinds:
        progress.update(f"fitting {kind} on {counts['train'][0]:,} rows", force=True)
        with mlflow.start_run(run_name=f"{kind}-{window.end:%Y%m%dT%H%M}") as run:
            if kind == RANDOM_FOREST:
                model = fit_random_forest(train_split, list(FEATURE_COLUMNS), pos_weight, seed)
                score = random_forest_scorer(model)
            else:
                frame = train_split.select(*FEATURE_COLUMNS, LABEL).toPandas()
                model = fit_xgboost(frame, list(FEATURE_COLUMNS), positive_weight(frame[LABEL].to_numpy()), seed)
                score = xgboost_scorer(model, list(FEATURE_COLUMNS), key=f"training/{run.info.run_id}")
            progress.update(f"evaluating {kind}", force=True)
            val = _scored(score(validation))
            threshold = choose_threshold(val[LABEL].to_numpy(), val[SCORE].to_numpy())
            tested = _scored(score(test))
            quality = evaluate(
                tested[LABEL].to_numpy(), tested[SCORE].to_numpy(), threshold, tested["anomaly_type"].to_numpy()
            )
            model_uri = _log_run(kind, model, data, threshold, quality, window, commit, seed, counts)
            report.candidates.append(Candidate(kind, run.info.run_id, model_uri, threshold, quality))
    best = report.best
    progress.update(f"registering {best.kind} (test F1 {best.quality.f1:.3f})", force=True)
    report.registered = registry.register(
        client,
        settings.model_name,
        best.model_uri,
        tags={
            registry.TAG_KIND: best.kind,
            registry.TAG_THRESHOLD: f"{best.threshold:.6f}",
            registry.TAG_FEATURES: _feature_list(),
            registry.TAG_WINDOW: str(window),
            registry.TAG_COMMIT: commit,
            **{k: f"{v:.4f}" for k, v in best.quality.as_metrics().items()},
        },
    )
    registry.set_challenger(client, report.registered)
    data.unpersist()
    progress.done(
        f"version {report.registered.version} ({best.kind}) registered as challenger: "
        f"test precision {best.quality.precision:.3f}, recall {best.quality.recall:.3f}, "
        f"F1 {best.quality.f1:.3f}, PR-AUC {best.quality.pr_auc:.3f}"
    )
    return report


def _split_counts(data: DataFrame) -> list:  # type: ignore[type-arg]
    from pyspark.sql import functions as F

    return data.groupBy("split").agg(F.count(F.lit(1)).alias("count"), F.sum(LABEL).alias("positives")).collect()


def _feature_list() -> str:
    import json

    return json.dumps(list(FEATURE_COLUMNS))


def _log_run(
    kind: str,
    model: object,
    data: DataFrame,
    threshold: float,
    quality: Quality,
    window: Window,
    commit: str,
    seed: int,
    counts: dict[str, tuple[int, int]],
) -> str:
    """Log params, metrics and the model to the active run; the logged model's URI."""
    import mlflow
    from mlflow.models import infer_signature

    example = data.select(*FEATURE_COLUMNS).limit(5).toPandas()
    signature = infer_signature(example, pd.Series(np.zeros(len(example)), name=SCORE))
    mlflow.log_params(
        {
            "model_kind": kind,
            "seed": seed,
            "training_window": str(window),
            "features": len(FEATURE_COLUMNS),
            **{f"rows_{split}": rows for split, (rows, _) in counts.items()},
        }
    )
    mlflow.log_metrics({"threshold": threshold, **quality.as_metrics()})
    mlflow.set_tags({registry.TAG_KIND: kind, registry.TAG_COMMIT: commit, registry.TAG_WINDOW: str(window)})
    mlflow.log_dict({"features": list(FEATURE_COLUMNS), "threshold": threshold}, "feature_list.json")
    if kind == RANDOM_FOREST:
        import mlflow.spark

        with tempfile.TemporaryDirectory() as tmp:
            info = mlflow.spark.log_model(model, ARTIFACT_PATH, signature=signature, dfs_tmpdir=tmp)
    else:
        import mlflow.xgboost

        info = mlflow.xgboost.log_model(model, name=ARTIFACT_PATH, signature=signature, input_example=example)
    return str(info.model_uri)
