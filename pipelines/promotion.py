"""Promotion: a person's decision on a registered version, recorded on the version itself."""

from __future__ import annotations

from models import registry
from pipelines.unsupervised_floor import METRIC_PREFIX as FLOOR_PREFIX
from pipelines.unsupervised_floor import Z_LIMIT


def decide(
    models: registry.ModelRegistry,
    version: str,
    approve: bool,
    decided_by: str,
    reason: str,
    override_gate: bool = False,
) -> registry.VersionInfo:
    """Approve (champion moves to `version`, the old champion becomes previous) or reject it.
    Approving a version the gate refused needs `override_gate` (ModelRegistry.promote)."""
    if approve:
        return models.promote(version, decided_by, reason, override_gate)
    return models.reject(version, decided_by, reason)


def outcome(info: registry.VersionInfo, approved: bool) -> str:
    """What a decision did to the version, in a few words."""
    if not approved:
        return "rejected"
    return "is now champion" + (" over the gate's refusal" if info.gate_refusal is not None else "")


_REVIEWED = ("precision", "recall", "f1", "pr_auc")


def review(models: registry.ModelRegistry) -> dict[str, str] | None:
    """The challenger waiting for a decision, as a Markdown review for the approver, or None.

    The champion's column is its score on the challenger's own test window (the gate measured
    both on the same rows), so the two columns compare like with like.
    """
    challenger = models.by_alias(registry.CHALLENGER)
    if challenger is None:
        return None
    champion = models.by_alias(registry.CHAMPION)
    metrics = models.client.get_run(challenger.run_id).data.metrics
    tags = models.client.get_model_version(models.name, challenger.version).tags
    head = f"| test window | challenger v{challenger.version} ({challenger.kind}) |"
    head += f" champion v{champion.version} ({champion.kind}) |" if champion else " champion |"
    lines = [head, "|---|---|---|"]
    kinds = sorted(k[len("test_recall_") :] for k in metrics if k.startswith("test_recall_"))
    rows = [(name, name) for name in _REVIEWED] + [("F1 at the best threshold for the test labels", "best_f1")]
    rows += [(f"recall on {kind}", f"recall_{kind}") for kind in kinds]
    for label, metric in rows:
        theirs = metrics.get(f"champion_test_{metric}")
        lines.append(
            f"| {label} | {metrics.get(f'test_{metric}', float('nan')):.3f} | "
            + (f"{theirs:.3f} |" if theirs is not None else "— |")
        )
    body = "\n".join(
        [
            f"### Promote {models.name} v{challenger.version} to champion?",
            "",
            *lines,
            "",
            _floor_line(metrics),
            "",
            f"Gate: {tags.get(registry.TAG_GATE_REASONS, 'n/a')}",
            "",
            *(
                ["**The gate refused this version**: approving it needs `override_gate` ticked.", ""]
                if challenger.gate_refusal is not None
                else []
            ),
            f"Training window `{tags.get(registry.TAG_WINDOW, '?')}`, threshold {challenger.threshold:.3f}, "
            f"commit `{tags.get(registry.TAG_COMMIT, '?')[:12]}`.",
            "Approve moves the `champion` alias (the running stream follows it within seconds); "
            "the current champion becomes `previous`.",
        ]
    )
    return {"model_name": models.name, "version": challenger.version, "body": body}


def _floor_line(metrics: dict[str, float]) -> str:
    f1, pr_auc = metrics.get(f"{FLOOR_PREFIX}f1"), metrics.get(f"{FLOOR_PREFIX}pr_auc")
    if f1 is None or pr_auc is None:
        return "No unsupervised floor was logged with this version."
    return (
        f"Unsupervised floor on the same test window (each device against its own normal history, "
        f"|z| >= {Z_LIMIT:g}, no model): F1 {f1:.3f}, PR-AUC {pr_auc:.3f}."
    )
