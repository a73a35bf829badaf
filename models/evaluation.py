"""Detection quality: threshold choice and the metrics every candidate is judged by."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximizes F1 on the validation split.

    F1 weighs a missed anomaly and a false alert alike, the trade-off an operator who must read
    every alert asks for; among equal F1 the higher threshold (fewer alerts) wins.
    """
    if labels.sum() == 0:
        return 0.5
    f1, thresholds = _f1_curve(labels, scores)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]
    return float(np.clip(thresholds[best], 1e-6, 1 - 1e-6))


def _f1_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 at every threshold the scores allow, and those thresholds."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    return 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12), thresholds


@dataclass(frozen=True)
class Quality:
    precision: float
    recall: float
    f1: float
    pr_auc: float
    rows: int
    positives: int
    recall_by_kind: dict[str, float] = field(default_factory=dict)
    # The F1 the best threshold for these very labels would give: beside `f1`, it shows how much
    # a threshold chosen without them (on the validation split) leaves on the table.
    best_f1: float = float("nan")

    def as_metrics(self, prefix: str = "test_") -> dict[str, float]:
        metrics = {
            f"{prefix}precision": self.precision,
            f"{prefix}recall": self.recall,
            f"{prefix}f1": self.f1,
            f"{prefix}pr_auc": self.pr_auc,
            f"{prefix}rows": float(self.rows),
            f"{prefix}positives": float(self.positives),
            f"{prefix}best_f1": self.best_f1,
        }
        metrics.update({f"{prefix}recall_{kind}": value for kind, value in self.recall_by_kind.items()})
        return metrics

    @classmethod
    def from_metrics(cls, metrics: dict[str, float], prefix: str = "test_") -> Quality:
        """The inverse of `as_metrics`: a quality read back from a run's metrics."""
        kind_prefix = f"{prefix}recall_"
        return cls(
            precision=metrics[f"{prefix}precision"],
            recall=metrics[f"{prefix}recall"],
            f1=metrics[f"{prefix}f1"],
            pr_auc=metrics[f"{prefix}pr_auc"],
            rows=int(metrics[f"{prefix}rows"]),
            positives=int(metrics[f"{prefix}positives"]),
            recall_by_kind={k[len(kind_prefix) :]: v for k, v in metrics.items() if k.startswith(kind_prefix)},
            best_f1=metrics.get(f"{prefix}best_f1", float("nan")),  # runs before it was logged have none
        )

    def value(self, metric: str) -> float:
        """One of precision, recall, f1, pr_auc by name."""
        return float(getattr(self, metric))


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float, kinds: np.ndarray | None = None) -> Quality:
    """Precision, recall, F1 at `threshold`, PR-AUC, recall per anomaly kind, and the best F1 any
    threshold gives on these labels."""
    predicted = scores >= threshold
    positives = labels == 1
    tp = float((predicted & positives).sum())
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float(positives.sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    pr_auc = float(average_precision_score(labels, scores)) if positives.any() else 0.0
    best_f1 = float(_f1_curve(labels, scores)[0].max()) if positives.any() else 0.0
    by_kind: dict[str, float] = {}
    if kinds is not None:
        for kind in sorted({k for k in kinds[positives] if k}):
            of_kind = kinds == kind
            by_kind[kind] = float((predicted & of_kind).sum() / max(of_kind.sum(), 1))
    return Quality(precision, recall, f1, pr_auc, len(labels), int(positives.sum()), by_kind, best_f1)
