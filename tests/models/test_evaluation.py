"""Detection quality: the threshold's F1 beside the best F1 the same labels allow."""

from __future__ import annotations

import math

import numpy as np

from models.evaluation import Quality, choose_threshold, evaluate


def _scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    labels = (rng.random(2000) < 0.1).astype(int)
    scores = np.clip(0.25 * labels + rng.normal(0.4, 0.12, labels.size), 0, 1)
    return labels, scores


def test_a_miscalibrated_threshold_shows_against_the_best_f1() -> None:
    labels, scores = _scored()
    best = choose_threshold(labels, scores)
    tuned = evaluate(labels, scores, best)
    assert math.isclose(tuned.f1, tuned.best_f1, rel_tol=1e-9)
    off = evaluate(labels, scores, 0.9)  # far above every positive's score: few alerts, low recall
    assert off.best_f1 == tuned.best_f1
    assert off.f1 < off.best_f1 - 0.2


def test_quality_reads_back_from_its_metrics_and_older_runs_lack_the_best_f1() -> None:
    labels, scores = _scored()
    quality = evaluate(labels, scores, 0.5, np.where(labels == 1, "spike", ""))
    assert Quality.from_metrics(quality.as_metrics()) == quality
    older = {k: v for k, v in quality.as_metrics().items() if k != "test_best_f1"}
    assert math.isnan(Quality.from_metrics(older).best_f1)
