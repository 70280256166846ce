"""The audit end to end through the real CLI: wall time, overhead beyond the attacks, and what it finds
on a sound model and on three gradient-masked versions of it.

Targets (issue 3): `make demo`'s audit under 3 minutes on 2 CPU cores; overhead beyond the attacks
under 10% of wall time ("audit overhead": the audit's and the report's own time beyond the attacks;
"incl. start-up" also counts the process: Python, importing torch, loading model and data); no
masking finding on the sound model; a masking finding on every masked one, with the adaptive robust
accuracy below the naive one.

    benchmarks/.bench-venv/bin/python benchmarks/bench_audit.py [--limit 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import environment, markdown

HERE = Path(__file__).parent
MODELS = {
    "zoo:digits-cnn": "sound",
    f"{HERE / 'masked_models.py'}:quantised": "input quantisation (8 levels)",
    f"{HERE / 'masked_models.py'}:saturated": "saturated softmax",
    f"{HERE / 'masked_models.py'}:shattered": "shattered gradients (sin noise)",
}
MASKING = {"BA103", "BA201", "BA203", "BA205", "BA206", "BA207"}


def run(model: str, limit: int, out: Path) -> tuple[float, dict, int]:
    exe = shutil.which("bastion", path=str(Path(sys.executable).parent)) or "bastion"
    cmd = [
        exe,
        "audit",
        model,
        "digits",
        "--norm",
        "linf",
        "--epsilon",
        "0.1",
        "--limit",
        str(limit),
        "--seed",
        "0",
        "--out",
        str(out),
    ]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - start
    if res.returncode not in (0, 1) or not (out / "report.json").is_file():
        raise SystemExit(f"{model}: exit {res.returncode}\n{res.stderr}")
    return wall, json.loads((out / "report.json").read_text()), res.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=200)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (model, what) in enumerate(MODELS.items()):
            wall, rep, code = run(model, args.limit, Path(tmp) / str(i))
            t = rep["threats"][0]
            codes = [f["code"] for f in rep["findings"]]
            timing = rep["timing"]
            attacks = timing["attack_seconds"]
            inside = timing["seconds"] + timing["render_seconds"]
            overhead = (wall - attacks) / wall
            own = (inside - attacks) / inside
            rows.append(
                [
                    what,
                    f"{rep['clean']['accuracy']:.1%}",
                    "n/a" if t["naive_robust_accuracy"] is None else f"{t['naive_robust_accuracy']:.1%}",
                    f"{t['robust_accuracy']:.1%}",
                    ", ".join(codes) or "none",
                    "yes" if set(codes) & MASKING else "no",
                    code,
                    wall,
                    attacks,
                    f"{own:.1%}",
                    f"{overhead:.1%}",
                ]
            )
            print(f"done {what}", flush=True)
    print(
        f"\n### Audit, digits-cnn on digits, linf ε=0.1, {args.limit} samples, preset standard "
        f"({environment()})\n"
    )
    print(
        markdown(
            [
                "model",
                "clean",
                "naive (white-box)",
                "adaptive",
                "findings",
                "masking flagged",
                "exit",
                "wall s",
                "attack s",
                "audit overhead",
                "incl. start-up",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
