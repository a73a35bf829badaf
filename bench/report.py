"""The benchmark's result as a Markdown table beside the paper's figures, and a latency plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

PAPER = {
    "throughput": "3,200,000 (24 cores)",
    "latency": "120 ms average",
    "recovery": "< 2 s",
    "quality": "92.8 % accuracy",
}


def _median(system: dict, *keys: str) -> float | None:
    """system[keys...]["median"], or None where that scenario did not run."""
    for key in keys:
        system = system.get(key) if isinstance(system, dict) else None
        if system is None:
            return None
    value = system.get("median") if isinstance(system, dict) else None
    return None if value is None or math.isnan(value) or value <= 0 else value


# Our figure over a baseline's: above 1 is more throughput, or a longer wait for an alert.
RATIOS = {
    "backlog throughput": lambda s: _median(s, "backlog", "events_per_minute"),
    "max sustained rate kept up": lambda s: _median(s, "sustained", "max_sustained_per_second"),
    "alert latency p50 at ~50 %": lambda s: _median(s, "latency", "50%", "p50"),
}


def _rate(per_second: float) -> str:
    return f"{per_second * 60:,.0f}/min" if per_second else "-"


_FLOOR_BODIES = {"count": "counted", "parquet": "appended raw to Parquet", "delta": "appended raw to Delta"}


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _spread(summary: dict) -> str:
    return f"{summary['median']:,.0f} ({summary['min']:,.0f}–{summary['max']:,.0f})"


def markdown(result: dict) -> str:
    systems = result["systems"]
    names = list(systems)
    if not names:  # a run of the trained-and-judged scenario only: no system was measured
        machine = result["machine"]
        return "\n".join(
            [
                f"Machine: {machine['cores']} cores, {machine['memory_gb']} GB; commit {result['commit'][:10]}.",
                *_realistic(result.get("realistic")),
                *_training(result.get("training")),
            ]
        )
    lines = [
        f"Machine: {result['machine']['cores']} cores, {result['machine']['memory_gb']} GB; commit {result['commit'][:10]}; "
        f"medians of {result['runs']} runs (min–max in brackets).",
        "",
        "| | " + " | ".join(names) + " | paper |",
        "|---" * (len(names) + 2) + "|",
    ]

    def row(label: str, cell: object, paper: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(cell(systems[n]) for n in names) + f" | {paper} |")  # type: ignore[operator]

    row(
        "backlog throughput, events/min",
        lambda s: _spread(s["backlog"]["events_per_minute"]) if "backlog" in s else "-",
        PAPER["throughput"],
    )
    row(
        "max sustained, events/min (capped by the backlog rate)",
        lambda s: (
            (
                f"{_rate(min(s['sustained']['max_sustained_per_second']['median'], s['backlog']['events_per_minute']['median'] / 60))}"
                f" (kept up at {_rate(s['sustained']['max_sustained_per_second']['median'])} in {result['load_seconds']:.0f} s loads)"
            )
            if "sustained" in s
            else "-"
        ),
    )
    for share in ("25%", "50%"):
        row(
            f"alert latency p50 / p95 / p99, ~{share} of max",
            lambda s, share=share: (
                " / ".join(_ms(s["latency"][share][q]["median"]) for q in ("p50", "p95", "p99"))
                + f" at {_rate(s['latency'][share]['runs'][0]['offered_per_second'])}"
                if share in s.get("latency", {})
                else "-"
            ),
            PAPER["latency"] if share == "50%" else "",
        )
    ours = systems.get("streamwarden", {})
    for name in names[1:]:
        for label, figure in RATIOS.items():
            mine, theirs = figure(ours), figure(systems[name])
            if mine and theirs:
                lines.append(f"| streamwarden / {name}, {label} | {mine / theirs:.2f}× |" + " |" * len(names))
    if "fixed_cost" in result:
        fixed = result["fixed_cost"]
        phases = fixed["runs"][0].get("phases_ms", {})
        lines.append(
            f"| fixed cost: a batch of ~{fixed['runs'][0]['events_per_burst']:,} events on an idle job (streamwarden) | "
            f"{_ms(fixed['seconds']['median'] * 1000)} ({_ms(fixed['seconds']['min'] * 1000)}–"
            f"{_ms(fixed['seconds']['max'] * 1000)}); first run's phases: "
            + ", ".join(f"{phase} {_ms(ms)}" for phase, ms in phases.items())
            + " |"
            + " |" * len(names)
        )
        if "floor_seconds" in fixed:
            floor = fixed["floor_seconds"]
            lines.append(
                "| the Spark floor under it: the same batches read as the job reads them, then only | "
                + ", ".join(f"{_FLOOR_BODIES[body]} {_ms(floor[body]['median'] * 1000)}" for body in floor)
                + " |"
                + " |" * len(names)
            )
    if "recovery" in result:
        rec = result["recovery"]
        lines.append(
            f"| recovery after SIGKILL (streamwarden) | {rec['recovery_s']['median']:.1f} s "
            f"({rec['recovery_s']['min']:.1f}–{rec['recovery_s']['max']:.1f}); lost {rec['lost']}, "
            f"duplicated {rec['duplicated']} |" + " |" * (len(names) - 1) + f" {PAPER['recovery']} |"
        )
    if "takeover" in result:
        tk = result["takeover"]
        bounce = tk["broker_bounce"]
        lines.append(
            f"| takeover by the warm standby after SIGKILL (streamwarden, {len(tk['kills'])} kills at "
            f"{tk['offered_per_second']:,.0f}/s) | {tk['takeover_s']['median']:.2f} s "
            f"({tk['takeover_s']['min']:.2f}–{tk['takeover_s']['max']:.2f}) to the standby's first batch, whose "
            f"events a steady batch holds in {tk.get('steady_batch_seconds', float('nan')):.1f} s; broker "
            f"SIGKILL + restart: scoring again {bounce.get('stream_back_s', float('nan')):.1f} s after it; lost "
            f"{tk['lost']}, duplicated {tk['duplicated_scored'] + tk['duplicated_alerts']}, alerts as scored: "
            f"{tk['alerts_match_scored']}, dead letters once: {tk['dead_letters_match']} |"
            + " |" * (len(names) - 1)
            + f" {PAPER['recovery']} |"
        )
    if "quality" in result:
        q = result["quality"]
        lines.append(
            f"| detection quality (held-out day, v{q['model']['version']} {q['model']['kind']}) | precision "
            f"{q['precision']:.3f}, recall {q['recall']:.3f}, F1 {q['f1']:.3f}, PR-AUC {q['pr_auc']:.3f} |"
            + " |" * (len(names) - 1)
            + f" {PAPER['quality']} |"
        )
    lines += _realistic(result.get("realistic"))
    lines += _training(result.get("training"))
    lines += _batch_breakdown(systems)
    fixed_runs = result.get("fixed_cost", {}).get("runs", [])
    lines += _spark_queries(fixed_runs[0].get("spark_stages") if fixed_runs else None, "the first fixed-cost run")
    latency_runs = systems.get("streamwarden", {}).get("latency", {}).get("50%", {}).get("runs", [])
    lines += _spark_queries(
        next((r["spark_stages"] for r in latency_runs if "spark_stages" in r), None), "the profiled ~50 % run"
    )
    lines += _profiles(systems)
    return "\n".join(lines)


def _training(training: dict | None) -> list[str]:
    """`warden train` on a fleet's history: each step's time and peak memory, and the quality."""
    if not training:
        return []
    peak = training["peak_mb"]
    lines = [
        "",
        f"Retraining at fleet scale (`--scenarios training`): `warden train` with the default settings "
        f"(Spark {training['settings']['spark_master']}, lake {training['settings']['lake']}) on "
        f"{training['devices']} devices x {training['days']} days ({training['events']:,} events): "
        f"**{training['train_seconds'] / 60:.1f} min**, peak resident memory python {peak['python'] / 1024:.2f} GB, "
        f"JVM {peak['child'] / 1024:.2f} GB (sampled every 0.25 s).",
        "",
        "| step | time | python peak | JVM peak |",
        "|---|---|---|---|",
    ]
    for step, usage in training["steps"].items():
        lines.append(
            f"| {step} | {usage['seconds']:.0f} s | {usage['peak_rss_mb_python'] / 1024:.2f} GB "
            f"| {usage['peak_rss_mb_child'] / 1024:.2f} GB |"
        )
    for kind, q in training["quality"].items():
        lines.append(
            f"- {kind}: test F1 {q['f1']:.3f}, PR-AUC {q['pr_auc']:.3f} on {q['rows']:,.0f} rows"
            + (f"; XGBoost fitted on ~{q['xgb_rows_expected']:,.0f} rows" if q["xgb_rows_expected"] else "")
        )
    return lines


def _realistic(realistic: dict | None) -> list[str]:
    """Models trained on each simulator scenario, judged on the day after their window, beside the
    per-device z-score floor: overall and per kind."""
    if not realistic:
        return []
    first = next(iter(realistic.values()))
    history = first["history"]
    scenarios = list(realistic)
    lines = [
        "",
        f"Trained and judged (`--scenarios realistic`): both kinds trained on {history['days']} days of "
        f"{history['devices']} devices (seed {history['seed']}) of each simulator scenario, the gate's pick judged on "
        "the day after, which it never saw; the per-device z-score floor beside it.",
        "",
        "| | " + " | ".join(f"{s}: model | {s}: floor" for s in scenarios) + " |",
        "|---" * (1 + 2 * len(scenarios)) + "|",
        "| model | "
        + " | ".join(f"{r['model']['kind']} v{r['model']['version']} | " for r in realistic.values())
        + " |",
    ]
    for label, key in (("precision", "precision"), ("recall", "recall"), ("F1", "f1"), ("PR-AUC", "pr_auc")):
        cells = [f"{r[key]:.3f} | {r[f'floor_{key}']:.3f}" for r in realistic.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    kinds = sorted({k[len("recall_") :] for r in realistic.values() for k in r if k.startswith("recall_")})
    for kind in kinds:
        cells = [
            f"{r.get(f'recall_{kind}', float('nan')):.3f} | {r.get(f'floor_recall_{kind}', float('nan')):.3f}"
            for r in realistic.values()
        ]
        lines.append(f"| recall, {kind} | " + " | ".join(cells) + " |")
    lines += [f"- gate, {scenario}: {r['gate']}" for scenario, r in realistic.items()]
    return lines


def _profiles(systems: dict) -> list[str]:
    """py-spy's heaviest frames in each system's profiled run (bench/cpu_profile.py)."""
    lines: list[str] = []
    for name, system in systems.items():
        runs = system.get("latency", {}).get("50%", {}).get("runs", [])
        profile = next((r["profile"] for r in runs if "profile" in r), None)
        if profile is None:
            continue
        lines += ["", f"py-spy on {name} during a ~50 % latency run ({profile.get('file', '')}):"]
        if "error" in profile:
            lines.append(f"- no profile: {profile['error']}")
            continue
        for kind, summary in profile.items():
            if not isinstance(summary, dict) or "cpu_seconds" not in summary:
                continue
            lines.append(
                f"- {kind}: {summary['cpu_seconds']} CPU s sampled; in our code: "
                f"{_shares(summary['our_code_inclusive'])}; doing: {_shares(summary['leaf_self'])}"
            )
    return lines


def _shares(frames: list) -> str:
    return "; ".join(f"{frame} {share:.0%}" for frame, share in frames[:5]) or "-"


# streaming/batch.py's phase clock: what each phase of a micro-batch does.
PHASES = {
    "features": "the context: online statistics and last readings of every device met so far",
    "score": "the batch's one Spark job: read from Kafka, parse, validate, features, model, write scored/ "
    "(census, newest readings and summary observed on the way)",
    "lake": "write rejected/ and read it back (only a batch with bad input)",
    "state": "save each device's last reading",
    "kafka": "the alerts (a big batch reads them back from scored/) and dead letters, in one Kafka transaction",
}


def _batch_breakdown(systems: dict) -> list[str]:
    """Where streamwarden's micro-batches spend their time, at each latency rate."""
    shares = systems.get("streamwarden", {}).get("latency", {})
    profiles = {
        share: [r["batches"] for r in data["runs"] if r.get("batches", {}).get("count")]
        for share, data in shares.items()
    }
    profiles = {share: runs for share, runs in profiles.items() if runs}
    if not profiles:
        return []
    lines = [
        "",
        "Where a streamwarden micro-batch spends its time (medians over the measured batches of each run, "
        "then over runs):",
        "",
        "| | " + " | ".join(f"~{share} of max" for share in profiles) + " |",
        "|---" * (len(profiles) + 1) + "|",
    ]

    def row(label: str, value: object) -> None:
        lines.append(f"| {label} | " + " | ".join(value(runs) for runs in profiles.values()) + " |")  # type: ignore[operator]

    row("events per batch", lambda runs: f"{statistics.median([r['rows'] for r in runs]):,.0f}")
    row("batch duration", lambda runs: _ms(1000 * statistics.median([r["seconds"] for r in runs])))
    for phase, meaning in PHASES.items():
        row(
            f"{phase}: {meaning}",
            lambda runs, phase=phase: _ms(statistics.median([r["phases_ms"].get(phase, 0.0) for r in runs])),
        )
    row(
        "the rest: offsets, planning, the checkpoint's commit",
        lambda runs: _ms(statistics.median([1000 * r["seconds"] - sum(r["phases_ms"].values()) for r in runs])),
    )
    return lines


def _spark_queries(stages: dict | None, run: str) -> list[str]:
    """Spark's event log of one of streamwarden's runs: the queries of a batch (bench/spark_stages.py)."""
    if stages is None:
        return []
    if "error" in stages:
        return ["", f"Spark's event log ({run}): {stages['error']}"]
    lines = [
        "",
        f"Spark's own metrics of a batch in {run} (event log {stages['file']}; medians over "
        f"{stages['batches']} batches of {stages['rows']:,.0f} events):",
        "",
        "| query | runs | wall | jobs | in jobs | tasks | task time | task CPU | GC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for query in stages["queries"]:
        lines.append(
            f"| {query['label']} | {query['runs']:.0f} | {_ms(query['wall_ms'])} | {query.get('jobs', 0):.0f} | "
            f"{_ms(query.get('jobs_ms', 0.0))} | {query['tasks']:.0f} | "
            f"{_ms(query['task_run_ms'])} | {_ms(query['task_cpu_ms'])} | {_ms(query['gc_ms'])} |"
        )
    lines.append(
        f"| foreachBatch outside these queries (driver: Feast, py4j, Kafka, file moves) | | "
        f"{_ms(stages['foreach_batch_outside_queries_ms'])} | | | | | | |"
    )
    lines.append(
        "- the trigger's phases (Spark's durationMs): "
        + ", ".join(f"{phase} {_ms(ms)}" for phase, ms in stages["durations_ms"].items())
    )
    return lines


def plot(result: dict, out: Path) -> Path:
    """Alert latency percentiles against the offered rate, one colour per system."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for (name, system), colour in zip(result["systems"].items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        for quantile, style in (("p50", "-o"), ("p95", "--s"), ("p99", ":^")):
            points = sorted(
                (run["offered_per_second"] * 60, run[quantile] / 1000)
                for share in system.get("latency", {}).values()
                for run in share["runs"]
            )
            if points:
                axis.plot(*zip(*points, strict=True), style, color=colour, label=f"{name} {quantile}")
    axis.set_xlabel("offered events/min")
    axis.set_ylabel("event → alert latency (s)")
    axis.set_xscale("log")  # the systems' rates are orders of magnitude apart
    axis.set_yscale("log")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(f"Alert latency against offered rate ({result['machine']['cores']} cores, {result['commit'][:8]})")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out
