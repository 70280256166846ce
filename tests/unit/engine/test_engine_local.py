"""The shard runner on the local engine: fixed shards and their seeds, the run directory (atomic
shard files, hashes, resume, corruption), exact merging, and failures that name their shard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bastion.engine import (
    LocalEngine,
    ModelRef,
    RunDirectory,
    Shard,
    ShardFailed,
    ShardOutput,
    evaluate_sharded,
    make_shards,
    run_shards,
)
from bastion.errors import BastionError, ModelContractError
from bastion.evaluation import evaluate
from bastion.threat import ThreatModel


def test_shards_cover_every_example_once() -> None:
    for n, size in [(1, 1), (10, 3), (120, 40), (7, 100)]:
        shards = make_shards(n, size)
        assert [i for s in shards for i in range(s.start, s.stop)] == list(range(n))
        assert all(len(s) == size for s in shards[:-1]) and 1 <= len(shards[-1]) <= size
    with pytest.raises(BastionError, match="shard size"):
        make_shards(10, 0)


def _echo(job: Any, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
    if shard.index in job.get("fail", ()):
        raise ValueError("boom")
    return ShardOutput({"x2": payload * 2}, {"n": len(shard)})


def test_run_directory_resumes_and_redoes_a_corrupt_shard(tmp_path: Path) -> None:
    x = torch.arange(10.0)
    shards = make_shards(10, 4)
    key = {"task": "echo"}

    def run(job: dict[str, Any]) -> Any:
        return run_shards(_echo, job, shards, lambda s: x[s.start : s.stop].clone(), job_key=key,
                          batch_size=1, run_dir=tmp_path / "run")  # fmt: skip

    with pytest.raises(ShardFailed, match=r"shard 1 \(examples 4-7\) failed: boom"):
        run({"fail": (1,)})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(manifest["done"]) == {"0"}  # the shard before the failure is kept
    first = run({})
    assert first.resumed == [0] and torch.equal(torch.cat([o.tensors["x2"] for o in first.outputs]), 2 * x)
    # flip a byte in shard 2's file: detected by its sha256, redone, same result
    shard_file = tmp_path / "run" / "shard-00002.safetensors"
    raw = bytearray(shard_file.read_bytes())
    raw[-1] ^= 0xFF
    shard_file.write_bytes(bytes(raw))
    again = run({})
    assert again.resumed == [0, 1] and again.redone == [2]
    assert torch.equal(torch.cat([o.tensors["x2"] for o in again.outputs]), 2 * x)
    with pytest.raises(BastionError, match="holds another run"):
        RunDirectory(tmp_path / "run", {"task": "other"}, shards)
    with pytest.raises(BastionError, match="sharded differently"):
        RunDirectory(tmp_path / "run", key, make_shards(10, 5))


def test_a_shard_that_drops_examples_is_refused(tmp_path: Path) -> None:
    def short(job: Any, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
        return ShardOutput({"v": payload[:-1]}, {})

    with pytest.raises(BastionError, match="returned 3 rows of 'v' for 4 examples"):
        run_shards(short, None, make_shards(8, 4), lambda s: torch.zeros(len(s)), job_key={}, batch_size=1)


@pytest.fixture(scope="module")
def digits() -> tuple[Any, torch.Tensor, torch.Tensor, ThreatModel]:
    from bastion.data import load_dataset

    ds = load_dataset("digits", split="test").take(90, seed=0)
    ref = ModelRef.create("zoo:digits-cnn")
    return ref, ds.x, ds.y, ThreatModel("linf", 0.1, bounds=ref.load().bounds)


def test_one_shard_is_the_unsharded_evaluation_and_shards_merge_exactly(digits, tmp_path: Path) -> None:
    ref, x, y, threat = digits
    clf = ref.load()
    plain = evaluate(clf, x, y, threat, "fast", seed=5)
    one = evaluate_sharded(clf, x, y, threat, "fast", seed=5, shard_size=500)
    assert torch.equal(one.robust, plain.robust) and torch.equal(one.x_adv, plain.x_adv)
    assert [s.n_fooled for s in one.stages] == [s.n_fooled for s in plain.stages]
    many = evaluate_sharded(ref, x, y, threat, "fast", seed=5, shard_size=25, engine=LocalEngine(threads=1),
                            run_dir=tmp_path / "run")  # fmt: skip
    assert many.extra["engine"]["shards"] == 4
    # "fast" has no focused stage, and every draw is keyed by example: shards of 25 give the one-pass result
    assert torch.equal(many.robust, plain.robust) and torch.allclose(many.x_adv, plain.x_adv, atol=1e-6)
    lost = sum(s.n_fooled for s in many.stages)
    assert int(many.clean_correct.sum()) - lost == int(many.robust.sum())
    assert many.stages[-1].robust_accuracy == pytest.approx(many.robust_accuracy)
    fooled = ~many.robust & many.clean_correct  # every reported adversarial is real and in the ball
    assert bool(threat.contains(x[fooled], many.x_adv[fooled]).all())
    assert bool((clf(many.x_adv[fooled]).argmax(1) != y[fooled]).all())
    resumed = evaluate_sharded(ref, x, y, threat, "fast", seed=5, shard_size=25, run_dir=tmp_path / "run")
    assert resumed.extra["engine"]["resumed"] == [0, 1, 2, 3]
    assert torch.equal(resumed.x_adv, many.x_adv) and torch.equal(resumed.robust, many.robust)


def test_workers_refuse_a_model_file_that_changed(tmp_path: Path) -> None:
    factory = tmp_path / "net.py"
    factory.write_text("import torch\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    ref = ModelRef.create(f"{factory}:build")
    ref.verify()
    factory.write_text("import torch\ndef build():\n    return torch.nn.Linear(4, 3)\n")
    with pytest.raises(ModelContractError, match="changed since the run started"):
        ref.verify()
    with pytest.raises(BastionError, match="ModelRef"):
        evaluate_sharded(torch.nn.Linear(4, 2), torch.zeros(2, 4), torch.zeros(2), ThreatModel("linf", 0.1),
                         engine="ray")  # fmt: skip


def test_bastion_evaluate_takes_an_engine(digits, tmp_path: Path) -> None:
    import bastion

    ref, x, y, threat = digits
    direct = evaluate_sharded(ref, x, y, threat, "fast", seed=1, shard_size=30)
    via_api = bastion.evaluate(ref.load(), x, y, threat, "fast", seed=1, engine="local", shard_size=30)
    assert torch.equal(via_api.x_adv, direct.x_adv) and via_api.extra["engine"]["shards"] == 3
    with pytest.raises(BastionError, match="tensors x, y"):
        bastion.evaluate(ref.load(), [(x, y)], threat, engine="local")


def test_certification_in_shards(digits, tmp_path: Path) -> None:
    from bastion.certify import IntervalBoundPropagation, RandomizedSmoothing
    from bastion.engine import certify_sharded

    ref, x, _, threat = digits
    clf = ref.load()
    smoothing = RandomizedSmoothing(0.25, n_select=20, n_estimate=200, batch_size=500)
    plain = smoothing.certify(clf, x[:30], seed=7)
    one = certify_sharded(smoothing, clf, x[:30], seed=7, shard_size=100)
    assert torch.equal(one.prediction, plain.prediction) and torch.equal(one.radius, plain.radius)
    sharded = certify_sharded(smoothing, ref, x[:30], seed=7, shard_size=8, run_dir=tmp_path / "run")
    again = certify_sharded(smoothing, ref, x[:30], seed=7, shard_size=8, run_dir=tmp_path / "run")
    assert again.params["engine"]["resumed"] == [0, 1, 2, 3] and torch.equal(again.radius, sharded.radius)
    assert bool((sharded.radius[sharded.abstained] == 0).all()) and sharded.method == "smoothing"
    # IBP is deterministic: any sharding gives the one-pass certificates exactly
    ibp = IntervalBoundPropagation(batch_size=64)
    assert torch.equal(
        certify_sharded(ibp, clf, x, threat, shard_size=7).radius, ibp.certify(clf, x, threat).radius
    )


def test_one_attack_in_shards(digits, tmp_path: Path) -> None:
    from bastion.attacks import get
    from bastion.engine import attack_sharded

    ref, x, y, threat = digits
    clf = ref.load()
    pgd = get("pgd", steps=10)
    direct = pgd(clf, x, y, threat, seed=3)  # one batch: every input draws as its index
    one = attack_sharded("pgd", {"steps": 10}, clf, x, y, threat, seed=3, batch_size=32, shard_size=500)
    assert torch.allclose(one.x_adv, direct.x_adv, atol=1e-6) and torch.equal(one.success, direct.success)
    assert one.queries == direct.queries
    kept = attack_sharded("pgd", {"steps": 10}, ref, x, y, threat, seed=3, batch_size=32, shard_size=40,
                          run_dir=tmp_path / "run")  # fmt: skip
    # neither batches of 32 nor shards of 40 change an input's random start
    assert torch.allclose(kept.x_adv, direct.x_adv, atol=1e-6) and torch.equal(kept.success, direct.success)
    again = attack_sharded("pgd", {"steps": 10}, ref, x, y, threat, seed=3, batch_size=32, shard_size=40,
                           run_dir=tmp_path / "run")  # fmt: skip
    assert again.engine["resumed"] == [0, 1, 2] and torch.equal(again.x_adv, kept.x_adv)
    assert bool(threat.contains(x, kept.x_adv).all())
    assert torch.equal(kept.success, (clf(kept.x_adv).argmax(1) != y) & kept.success)
    with pytest.raises(Exception, match="steps"):
        attack_sharded("fgsm", {"steps": 3}, clf, x, y, threat)  # fgsm takes no steps: refused before work


def test_the_audits_attack_batches_on_the_runner_resume_with_the_same_report(tmp_path: Path) -> None:
    from dataclasses import replace

    from bastion import zoo
    from bastion.audit import AuditConfig, run_audit
    from bastion.data import load_dataset
    from bastion.engine.batches import AttackBatches

    ds = load_dataset("digits", split="test")
    cfg = replace(AuditConfig(), limit=40, preset="fast", seed=0, batch_size=20, curve=False,
                  threats=(("linf", 0.1),))  # fmt: skip

    def numbers(batches: AttackBatches | None) -> Any:
        model = zoo.load("digits-cnn") if batches is None else batches.live

        def strip(o: Any) -> Any:  # clocks differ from run to run; nothing else may
            if isinstance(o, dict):
                clocks = ("timing", "environment", "created")
                return {k: strip(v) for k, v in o.items() if k not in clocks and not k.endswith("seconds")}
            return [strip(v) for v in o] if isinstance(o, list) else o

        return strip(run_audit(model, ds, cfg, batches=batches).to_dict())

    plain = numbers(None)
    first = AttackBatches("local", zoo.load("digits-cnn"), run_dir=tmp_path / "run")
    assert numbers(first) == plain and first.calls > 3 and first.resumed == 0
    again = AttackBatches("local", zoo.load("digits-cnn"), run_dir=tmp_path / "run")
    assert numbers(again) == plain and again.resumed == len(list((tmp_path / "run").glob("*/shard-*")))


def test_out_of_gpu_memory_retries_the_shard_at_half_the_batch() -> None:
    from bastion.engine.engines import run_task

    tried: list[int] = []

    def hungry(job: Any, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
        tried.append(batch_size)
        if batch_size > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return ShardOutput({"v": payload}, {"batch_size": batch_size})

    out = run_task(hungry, None, Shard(0, 0, 4), torch.zeros(4), 10, None)
    assert tried == [10, 5, 2] and out.meta["batch_size"] == 2
    tried.clear()

    def never(job: Any, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
        tried.append(batch_size)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_task(never, None, Shard(0, 0, 4), torch.zeros(4), 3, None)
    assert tried == [3, 1]
