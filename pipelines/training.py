"""Fit both model kinds on a training set and log each to MLflow as a candidate.

Every candidate is judged on the same test split (each device's newest 15 % of the window), beside
the unsupervised per-device floor on that split;
`pipelines.gate` then decides whether the best one is worth a person's approval.
Idempotent: a kind already trained on the same training set (a finished run tagged with its
location) is not trained again, so a retried task reuses its run.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.formulas import FEATURE_COLUMNS
from infra.context import Context
from infra.memory import MeasuredStep
from infra.progress import ProgressLine
from infra.settings import PROJECT_ROOT, Settings
from infra.spark_progress import spark_progress
from models import registry
from models.estimators import LABEL, RANDOM_FOREST, fit_random_forest, fit_xgboost, positive_weight
from models.evaluation import Quality, choose_threshold, evaluate
from models.scoring import SCORE, Scorer, judged_columns, random_forest_scorer, xgboost_scorer
from pipelines.exceptions import TrainingError
from pipelines.split_coverage import split_coverage
from pipelines.training_sample import xgboost_sample
from pipelines.training_set import Window, read_training_set
from pipelines.unsupervised_floor import METRIC_PREFIX as FLOOR_PREFIX
from pipelines.unsupervised_floor import Z_LIMIT, zscore_floor

if TYPE_CHECKING:
    import xgboost as xgb
    from mlflow.entities import Run
    from pyspark.ml import PipelineModel

ARTIFACT_PATH = "model"
TAG_TRAINING_SET = "training_set"
TAG_MODEL_URI = "model_uri"
# A run is reused only for the same inputs: training set, model kind and seed.
TAG_SEED = "seed"


@dataclass(frozen=True)
class Candidate:
    kind: str
    run_id: str
    model_uri: str
    threshold: float
    quality: Quality
    # The per-device z-score on the same test split (`pipelines.unsupervised_floor`); None for a
    # run logged before it existed.
    floor: Quality | None = None

    @classmethod
    def of(cls, run: Run) -> Candidate:
        """A candidate from its MLflow run (what the next task, or a retry, sees)."""
        return cls(
            kind=run.data.tags[registry.TAG_KIND],
            run_id=run.info.run_id,
            model_uri=run.data.tags[TAG_MODEL_URI],
            threshold=run.data.metrics["threshold"],
            quality=Quality.from_metrics(run.data.metrics),
            floor=Quality.from_metrics(run.data.metrics, FLOOR_PREFIX)
            if f"{FLOOR_PREFIX}f1" in run.data.metrics
            else None,
        )


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


def judge_on(score: Scorer, test: DataFrame, threshold: float) -> Quality:
    tested = judged_columns(score(test))
    return evaluate(tested[LABEL].to_numpy(), tested[SCORE].to_numpy(), threshold, tested["anomaly_type"].to_numpy())


def split_counts(data: DataFrame, window: Window) -> dict[str, tuple[int, int]]:
    """(rows, anomalies) per split; TrainingError if a split cannot train or judge a model."""
    rows = data.groupBy("split").agg(F.count(F.lit(1)).alias("rows"), F.sum(LABEL).alias("positives")).collect()
    counts = {row["split"]: (int(row["rows"]), int(row["positives"] or 0)) for row in rows}
    for split in ("train", "validation", "test"):
        total, positives = counts.get(split, (0, 0))
        if total == 0 or positives == 0:
            raise TrainingError(
                f"the {split} split of {window} has {total} rows and {positives} anomalies; "
                "train on a longer window of labeled history"
            )
    return counts


def train_candidates(
    ctx: Context,
    location: str,
    window: Window,
    kinds: tuple[str, ...],
    seed: int = 0,
    progress: ProgressLine | None = None,
) -> list[Candidate]:
    """Fit each kind on the training set at `location`, pick its threshold on the validation
    split, judge it on the test split and log it to MLflow; the candidates, one per kind."""
    progress = progress or ProgressLine("train")
    settings, spark, client = ctx.settings, ctx.spark, ctx.registry.client
    data = read_training_set(spark, location).cache()
    try:
        counts = split_counts(data, window)
        coverage = split_coverage(data)
        progress.update(f"splits: {coverage.summary()}", force=True)
        import mlflow

        experiment = mlflow.set_experiment(ctx.registry.name)
        commit = git_commit()
        train_split = data.where("split = 'train'")
        validation, test = data.where("split = 'validation'"), data.where("split = 'test'")
        floor = zscore_floor(train_split, test)
        progress.update(
            f"unsupervised floor (each device against its own normal history, |z| >= {Z_LIMIT:g}): "
            f"test F1 {floor.f1:.3f}, PR-AUC {floor.pr_auc:.3f}",
            force=True,
        )
        candidates = []
        for kind in kinds:
            done = client.search_runs(
                [experiment.experiment_id],
                f"tags.{TAG_TRAINING_SET} = '{location}' and tags.{registry.TAG_KIND} = '{kind}' "
                f"and tags.{TAG_SEED} = '{seed}' and attributes.status = 'FINISHED'",
                max_results=1,
            )
            if done:
                progress.update(f"{kind}: already trained on this set (run {done[0].info.run_id})", force=True)
                candidates.append(Candidate.of(done[0]))
                continue
            with mlflow.start_run(run_name=f"{kind}-{window.id}") as run:
                with MeasuredStep() as fitting, spark_progress(spark, progress, f"{kind}: fitting"):
                    model, score = _fit(settings, spark, kind, train_split, counts["train"], seed, progress)
                progress.update(f"{kind}: fitted in {fitting.usage}", force=True)
                progress.update(f"{kind}: choosing the threshold, judging on the test window", force=True)
                with MeasuredStep() as judging, spark_progress(spark, progress, f"{kind}: judging"):
                    val = judged_columns(score(validation))
                    threshold = choose_threshold(val[LABEL].to_numpy(), val[SCORE].to_numpy())
                    del val
                    quality = judge_on(score, test, threshold)
                mlflow.log_metrics({**fitting.usage.as_metrics("fit_"), **judging.usage.as_metrics("judge_")})
                model_uri = _log_run(
                    run.info.run_id,
                    kind,
                    model,
                    data,
                    threshold,
                    quality,
                    window,
                    commit,
                    seed,
                    counts,
                    hyperparameters(settings, kind),
                )
                mlflow.log_metrics(floor.as_metrics(FLOOR_PREFIX))
                mlflow.log_dict(coverage.as_dict(), "split_coverage.json")
                mlflow.set_tags({TAG_TRAINING_SET: location, TAG_MODEL_URI: model_uri, TAG_SEED: str(seed)})
            candidates.append(Candidate(kind, run.info.run_id, model_uri, threshold, quality, floor))
            run_url = f"{settings.mlflow_tracking_uri}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
            progress.update(f"{kind}: test F1 {quality.f1:.3f}, PR-AUC {quality.pr_auc:.3f}; run {run_url}", force=True)
        return candidates
    finally:
        data.unpersist()


def _fit(
    settings: Settings,
    spark: SparkSession,
    kind: str,
    train: DataFrame,
    counts: tuple[int, int],
    seed: int,
    progress: ProgressLine,
) -> tuple[PipelineModel | xgb.Booster, Scorer]:
    """The model of `kind` fitted on the training split ((rows, anomalies) = `counts`), and its scorer."""
    if kind == RANDOM_FOREST:
        rows, positives = counts
        progress.update(f"{kind}: fitting on all {rows:,} rows, in Spark", force=True)
        forest = fit_random_forest(
            train,
            list(FEATURE_COLUMNS),
            positive_weight(rows, positives),
            seed,
            settings.rf.num_trees,
            settings.rf.max_depth,
        )
        return forest, random_forest_scorer(forest)
    sample = xgboost_sample(counts, settings.xgb.max_rows)
    import mlflow

    mlflow.log_params(sample.as_params())
    progress.update(f"{kind}: {sample}", force=True)
    features, labels = sample.matrix(train, seed)
    booster = fit_xgboost(
        features,
        labels,
        list(FEATURE_COLUMNS),
        positive_weight(len(labels), int(labels.sum())),
        seed,
        settings.xgb.num_rounds,
        settings.xgb.max_depth,
    )
    return booster, xgboost_scorer(spark, booster, list(FEATURE_COLUMNS))


def hyperparameters(settings: Settings, kind: str) -> dict[str, int]:
    """The model's size settings, as logged with its run."""
    if kind == RANDOM_FOREST:
        return {"num_trees": settings.rf.num_trees, "max_depth": settings.rf.max_depth}
    return {"num_rounds": settings.xgb.num_rounds, "max_depth": settings.xgb.max_depth}


def feature_list() -> str:
    return json.dumps(list(FEATURE_COLUMNS))


def _log_run(
    run_id: str,
    kind: str,
    model: object,
    data: DataFrame,
    threshold: float,
    quality: Quality,
    window: Window,
    commit: str,
    seed: int,
    counts: dict[str, tuple[int, int]],
    hyperparameters: dict[str, int],
) -> str:
    """Log params, metrics and the model to the active run `run_id`; the logged model's URI."""
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
            **hyperparameters,
        }
    )
    mlflow.log_metrics({"threshold": threshold, **quality.as_metrics()})
    mlflow.set_tags({registry.TAG_KIND: kind, registry.TAG_COMMIT: commit, registry.TAG_WINDOW: str(window)})
    mlflow.log_dict({"features": list(FEATURE_COLUMNS), "threshold": threshold}, "feature_list.json")
    # The requirements are stated, not inferred: inference loads the model again in a child
    # process, which for a Spark model means a second JVM and about a minute.
    if kind == RANDOM_FOREST:
        import mlflow.spark

        # Saved to a local folder, then uploaded: `log_model` would first try to write through
        # Hadoop to the `mlflow-artifacts:` URI, which Hadoop has no file system for.
        with tempfile.TemporaryDirectory() as tmp:
            folder = f"{tmp}/{ARTIFACT_PATH}"
            mlflow.spark.save_model(
                model,
                folder,
                signature=signature,
                dfs_tmpdir=f"{tmp}/dfs",
                pip_requirements=mlflow.spark.get_default_pip_requirements(),
            )
            mlflow.log_artifacts(folder, ARTIFACT_PATH)
        return f"runs:/{run_id}/{ARTIFACT_PATH}"
    import mlflow.xgboost

    info = mlflow.xgboost.log_model(
        model,
        name=ARTIFACT_PATH,
        signature=signature,
        input_example=example,
        pip_requirements=mlflow.xgboost.get_default_pip_requirements(),
    )
    return str(info.model_uri)
