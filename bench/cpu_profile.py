"""py-spy on a running system: where its Python time goes, beside Spark's own batch metrics.

`py-spy record` samples the process and its Python subprocesses (for streamwarden: the driver
and the pyspark.daemon workers that run the model) while they are on a CPU; time a thread spends
waiting (on the JVM through py4j, on a socket) is Spark's side, which the batch phases measure.
The raw file holds one collapsed stack per line (`frame;frame;... count`); speedscope.app and
flamegraph.pl read it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

TOP = 12
RATE = 50  # samples per second
# A frame as py-spy prints it: "function (path/to/module.py:line)".
_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:]+)(?::\d+)?\)$")
# py-spy names a module by its path under its sys.path entry: ours are these packages (and the
# bench's baselines); Feast's own `feast/infra/...` is not.
_OURS = ("streaming/", "simulator/", "features/", "models/", "pipelines/", "infra/", "baselines/")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample `pid` and its subprocesses for `seconds` into `out` (raw); None without py-spy."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        return None
    command = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--rate",
        str(RATE),
        "--duration",
        str(int(seconds)),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603


def finish(recorder: subprocess.Popen[bytes] | None, out: Path) -> dict:
    """Wait for the recording; the heaviest frames of its samples, or why there are none."""
    if recorder is None:
        return {"error": "py-spy is not installed (make bench installs it)"}
    _, stderr = recorder.communicate(timeout=600)
    if recorder.returncode != 0 or not out.exists():
        return {"error": f"py-spy exited with {recorder.returncode}: {stderr.decode(errors='replace')[-300:].strip()}"}
    return {"file": out.name, **summarize(out.read_text())}


def summarize(raw: str) -> dict:
    """Per process kind, CPU seconds sampled, and the share of them in each frame of our code
    (inclusive) and in each leaf frame (self): where the time is spent, and doing what."""
    samples: Counter[str] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    leaf: Counter[tuple[str, str]] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]
        kind = "worker" if any("pyspark.daemon" in p or "pyspark/daemon" in p for p in processes) else "driver"
        weight = int(count)
        samples[kind] += weight
        for short, file in {_short(frame) for frame in set(frames) - set(processes)}:
            if file.startswith(_OURS):
                inclusive[kind, short] += weight
        leaf[kind, _short(frames[-1])[0]] += weight
    result: dict = {"samples": dict(samples)}
    for kind, total in samples.items():
        result[kind] = {
            "cpu_seconds": round(total / RATE, 1),
            "our_code_inclusive": _top(inclusive, kind, total),
            "leaf_self": _top(leaf, kind, total),
        }
    return result


def _short(frame: str) -> tuple[str, str]:
    """`function (package/module.py)` without the line, and the module's path ("" if none)."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return f"{match['function']} ({match['file']})", match["file"]


def _top(counter: Counter[tuple[str, str]], kind: str, total: int) -> list[tuple[str, float]]:
    ranked = sorted(((frame, n) for (k, frame), n in counter.items() if k == kind), key=lambda item: -item[1])
    return [(frame, round(n / total, 3)) for frame, n in ranked[:TOP]]
