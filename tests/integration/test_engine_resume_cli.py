"""``bastion evaluate --resume DIR`` end to end: the driver killed with SIGKILL mid-run, the same command
run again reads the finished shards back, and the result equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_cli import EXE, bastion

ARGS = ("evaluate", "zoo:digits-cnn", "digits", "--limit", "150", "--preset", "fast", "--shard-size", "10",
        "--seed", "4")  # fmt: skip


def test_a_killed_driver_resumes_where_it_stopped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [EXE] if EXE else [sys.executable, "-m", "bastion"]
    proc = subprocess.Popen([*cmd, *ARGS, "--resume", str(run), "--json", str(tmp_path / "killed.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while len(list(run.glob("shard-*.safetensors"))) < 3:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no shard was written"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = json.loads((run / "manifest.json").read_text())["done"]
    assert 3 <= len(kept) < 15 and not (tmp_path / "killed.json").exists()
    assert not list(run.glob(".*.tmp"))  # atomic writes leave no half files behind
    res = bastion(*ARGS, "--resume", str(run), "--json", str(tmp_path / "resumed.json"))
    assert res.returncode == 0, res.stderr
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert sorted(resumed["engine"]["resumed"]) == sorted(int(k) for k in kept)
    straight = bastion(*ARGS, "--json", str(tmp_path / "straight.json"))
    assert straight.returncode == 0, straight.stderr
    whole = json.loads((tmp_path / "straight.json").read_text())
    assert whole["engine"]["resumed"] == [] and whole["robust_accuracy"] == resumed["robust_accuracy"]
    strip = [[{k: v for k, v in s.items() if k != "seconds"} for s in r["stages"]] for r in (whole, resumed)]
    assert strip[0] == strip[1]
    other = bastion(*ARGS[:-1], "5", "--resume", str(run))  # another seed: another run, refused
    assert other.returncode == 2 and "holds another run" in other.stderr


def test_engine_options_are_checked_first() -> None:
    cases = {
        "unknown engine 'spark'": ("evaluate", "zoo:digits-cnn", "digits", "--engine", "spark"),
        "apply to --engine ray": ("membership", "zoo:digits-cnn", "--members", "digits", "--non-members",
                                  "digits", "--workers", "2"),
    }  # fmt: skip
    for expected, args in cases.items():
        res = bastion(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and expected in lines[0], (expected, res.stderr)


def test_attack_and_certify_resume_from_their_run_directories(tmp_path: Path) -> None:
    runs = {
        "attack": ("attack", "zoo:digits-cnn", "digits", "--attack", "pgd", "--steps", "5", "--limit", "60",
                   "--shard-size", "20"),
        "certify": ("certify", "zoo:digits-cnn", "digits", "--sigma", "0.25", "--n", "100", "--n0", "10",
                    "--limit", "12", "--shard-size", "5"),
    }  # fmt: skip
    for name, args in runs.items():
        first, second = tmp_path / f"{name}-1.json", tmp_path / f"{name}-2.json"
        for out in (first, second):
            res = bastion(*args, "--resume", str(tmp_path / name), "--json", str(out))
            assert res.returncode == 0, res.stderr
        a, b = json.loads(first.read_text()), json.loads(second.read_text())
        engine = b["engine"] if name == "attack" else b["params"]["engine"]
        assert engine["resumed"] == [0, 1, 2] and engine["redone"] == []
        keys = ("success_rate", "robust_accuracy") if name == "attack" else ("certified_accuracy", "samples")
        assert all(a[k] == b[k] for k in keys), name
