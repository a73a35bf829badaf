"""Load a registered version for scoring, validate it, and follow the `champion` alias.

The stream never loads by stage or "latest": it resolves `champion` to one version, loads only a
READY version, checks it (feature list, threshold, a smoke prediction on a fixed sample) and
swaps at a micro-batch boundary. A version that fails any check is refused: the current model
keeps scoring, and the refusal is logged and counted.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from features.formulas import FEATURE_COLUMNS
from models.estimators import RANDOM_FOREST, XGBOOST
from models.exceptions import ModelRejected
from models.registry import CHAMPION, ModelRegistry, VersionInfo
from models.scoring import SCORE, Scorer, scorer_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# A normal reading and an obvious multi-sensor failure: every input near normal, or far out.
_SMOKE_ROWS = [[value] * len(FEATURE_COLUMNS) for value in (0.3, 9.0)]


@dataclass(frozen=True)
class ScoringModel:
    info: VersionInfo
    score: Scorer

    @property
    def version(self) -> str:
        return self.info.version


def load_version(spark: SparkSession, info: VersionInfo) -> ScoringModel:
    """Load and validate one registered version; ModelRejected names what is wrong."""
    if info.status != "READY":
        raise ModelRejected(f"version {info.version} is {info.status}, not READY")
    if list(info.features) != list(FEATURE_COLUMNS):
        raise ModelRejected(
            f"version {info.version} was trained on features {list(info.features)}, "
            f"the stream computes {list(FEATURE_COLUMNS)}"
        )
    if not 0.0 < info.threshold < 1.0:
        raise ModelRejected(f"version {info.version} has no usable decision threshold ({info.threshold})")
    try:
        if info.kind == RANDOM_FOREST:
            import mlflow.spark

            model = mlflow.spark.load_model(info.uri)
        elif info.kind == XGBOOST:
            import mlflow.xgboost

            model = mlflow.xgboost.load_model(info.uri)
        else:
            raise ModelRejected(f"version {info.version} has unknown model kind {info.kind!r}")
        scorer = scorer_for(spark, info.kind, model, list(FEATURE_COLUMNS))
    except ModelRejected:
        raise
    except Exception as exc:  # any load failure refuses the version, whatever raised it
        raise ModelRejected(f"version {info.version} failed to load: {type(exc).__name__}: {exc}") from None
    loaded = ScoringModel(info, scorer)
    smoke_test(spark, loaded)
    return loaded


def smoke_test(spark: SparkSession, model: ScoringModel) -> None:
    """Score the fixed sample: every score must be a number in [0, 1]."""
    sample: DataFrame = spark.createDataFrame(_SMOKE_ROWS, schema=[f"{c}" for c in FEATURE_COLUMNS])
    try:
        scores = [row[SCORE] for row in model.score(sample).select(SCORE).collect()]
    except Exception as exc:
        raise ModelRejected(f"version {model.version} failed the smoke prediction: {type(exc).__name__}") from None
    if len(scores) != len(_SMOKE_ROWS) or not all(
        s is not None and math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores
    ):
        raise ModelRejected(f"version {model.version} gave invalid smoke scores {scores}")


class ChampionWatcher:
    """Polls the `champion` alias in a background thread and keeps a validated model ready.

    `current` is read at the start of each micro-batch; a swap takes effect from the next one.
    """

    def __init__(
        self,
        spark: SparkSession,
        registry: ModelRegistry,
        poll_seconds: float,
        on_swap: Callable[[ScoringModel | None, ScoringModel], None] = lambda old, new: None,
        on_refuse: Callable[[VersionInfo, str], None] = lambda info, why: None,
    ) -> None:
        self.spark = spark
        self.registry = registry
        self.model_name = registry.name
        self.poll_seconds = poll_seconds
        self.on_swap = on_swap
        self.on_refuse = on_refuse
        self.current: ScoringModel | None = None
        self.refused: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)

    def check(self) -> None:
        """Resolve the alias once; load, validate and swap if it moved to a new version."""
        info = self.registry.by_alias(CHAMPION)
        if info is None or info.version in self.refused:
            return
        if self.current is not None and self.current.version == info.version:
            return
        if info.status == "PENDING_REGISTRATION":
            return  # look again at the next poll
        try:
            loaded = load_version(self.spark, info)
        except ModelRejected as exc:
            self.refused.add(info.version)
            log.error("refused model %s version %s: %s", self.model_name, info.version, exc)
            self.on_refuse(info, str(exc))
            return
        previous, self.current = self.current, loaded
        log.warning(
            "scoring with model %s version %s (%s)%s",
            self.model_name,
            loaded.version,
            info.kind,
            f", was version {previous.version}" if previous else "",
        )
        self.on_swap(previous, loaded)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception:  # a registry hiccup must not kill the watcher: retry at the next poll
                log.exception("checking the champion alias failed")
