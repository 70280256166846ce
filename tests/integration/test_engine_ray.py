"""The shard runner on Ray (a local cluster of 2 CPUs started here): the same per-example results on
the local engine and on 1 and 2 Ray workers, and a worker killed mid-shard whose shard Ray retries."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bastion.engine import (
    LocalEngine,
    ModelRef,
    RayEngine,
    Shard,
    ShardOutput,
    evaluate_sharded,
    make_shards,
    run_shards,
)
from bastion.threat import ThreatModel

ray = pytest.importorskip("ray")  # the ray extra: pip install 'bastion[ray]'


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    # this module's functions travel by value (workers cannot import the tests folder)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=200 * 1024**2)  # fmt: skip
    yield
    ray.shutdown()


def test_results_are_identical_on_every_engine_and_worker_count(cluster: None) -> None:
    from bastion.data import load_dataset

    ds = load_dataset("digits", split="test").take(90, seed=1)
    ref = ModelRef.create("zoo:digits-cnn")
    threat = ThreatModel("linf", 0.1, bounds=ref.load().bounds)
    engines = {"local": LocalEngine(threads=1), "ray-1": RayEngine(workers=1), "ray-2": RayEngine(workers=2)}
    runs = {
        name: evaluate_sharded(ref, ds.x, ds.y, threat, "fast", seed=2, shard_size=30, engine=engine)
        for name, engine in engines.items()
    }
    base = runs["local"]
    assert 0 < base.robust_accuracy < base.clean_accuracy
    for name, r in runs.items():
        assert torch.equal(r.x_adv, base.x_adv), name  # bit-identical adversarials
        assert torch.equal(r.robust, base.robust) and torch.equal(r.predictions, base.predictions), name
        assert [s.to_dict() | {"seconds": 0} for s in r.stages] == [
            s.to_dict() | {"seconds": 0} for s in base.stages
        ]
    assert runs["ray-2"].extra["engine"] == {"engine": "ray", "workers": 2, "shards": 3, "resumed": [],
                                             "redone": [], "shard_size": 30}  # fmt: skip


def dies_once(job: Any, shard: Shard, payload: Any, batch_size: int) -> ShardOutput:
    """Kills its own worker process the first time it runs shard 1 (a marker file remembers)."""
    marker = Path(job["dir"]) / f"died-{shard.index}"
    if shard.index == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return ShardOutput({"twice": payload * 2}, {"pid": os.getpid()})


def test_a_killed_worker_shard_is_retried(cluster: None, tmp_path: Path) -> None:
    x = torch.arange(12.0)
    engine = RayEngine(workers=2, max_retries=2)
    payload = lambda s: x[s.start : s.stop].clone()  # noqa: E731
    out = run_shards(dies_once, {"dir": str(tmp_path)}, make_shards(12, 4), payload, job_key={}, batch_size=1,
                     engine=engine)  # fmt: skip
    assert (tmp_path / "died-1").exists()  # the worker did die...
    assert torch.equal(torch.cat([o.tensors["twice"] for o in out.outputs]), 2 * x)  # ...and nothing was lost
    assert out.outputs[1].meta["pid"] != int((tmp_path / "died-1").read_text())  # another process redid it


def test_reference_models_train_as_ray_tasks_with_the_same_masks(cluster: None, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from bastion.attacks.inference.references import train_references
    from bastion.data import load_dataset
    from bastion.defenses.training.config import TrainingConfig

    net = tmp_path / "net.py"
    net.write_text(
        "import torch\n\n\ndef build():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n"
    )
    ref = ModelRef.create(f"{net}:build")
    pool = load_dataset("digits", split="train").take(200, seed=0)
    cfg = TrainingConfig(epochs=1, batch_size=50, lr=0.05, seed=3)
    on_ray = train_references(ref, pool, 3, tmp_path / "ray", seed=9, config=cfg, engine=RayEngine(workers=2))
    local = train_references(
        ref, pool, 3, tmp_path / "local", seed=9, config=cfg, engine=LocalEngine(threads=1)
    )
    assert torch.equal(on_ray.assignment.keep, local.assignment.keep)
    assert (tmp_path / "ray" / "assignment.json").read_bytes() == (
        tmp_path / "local" / "assignment.json"
    ).read_bytes()
    for i in range(3):  # one thread each: the same weights, bit for bit
        a, b = (load_file(str(tmp_path / d / f"reference-{i:03d}.safetensors")) for d in ("ray", "local"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_derandomized_certificates_are_the_same_on_ray(cluster: None, tmp_path: Path) -> None:
    """A SoftVote model from a file and its weights: certified in shards on 2 Ray workers, each loading
    it from its hashed files, equals one unsharded pass of the API on the live model."""
    from safetensors.torch import save_file

    from bastion.certify import DerandomizedSmoothing
    from bastion.data import load_dataset
    from bastion.engine import certify_sharded

    net = tmp_path / "soft.py"
    net.write_text(
        "import torch\nfrom bastion.certify.derandomized import Ablation, SoftVote\n\n\ndef build():\n"
        "    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128, 10))\n"
        "    return SoftVote(base, Ablation('block', 3), (0.0, 1.0))\n"
    )
    namespace: dict[str, Any] = {}
    exec(net.read_text(), namespace)
    torch.manual_seed(5)
    soft = namespace["build"]()
    save_file(soft.state_dict(), str(tmp_path / "soft.safetensors"))
    ref = ModelRef.create(f"{net}:build", weights=str(tmp_path / "soft.safetensors"))
    x = load_dataset("digits", split="test").take(30, seed=3).x
    certifier = DerandomizedSmoothing("block", 3, batch_size=64)
    sharded = certify_sharded(certifier, ref, x, shard_size=8, engine=RayEngine(workers=2))
    whole = certifier.certify(soft.base.eval(), x)
    assert torch.equal(sharded.prediction, whole.prediction) and torch.equal(sharded.radius, whole.radius)
    assert sharded.params["engine"]["shards"] == 4 and sharded.method == "derandomized-block"
    with pytest.raises(Exception, match="ablates"):  # the certifier must be the model's own ablation
        certify_sharded(DerandomizedSmoothing("column", 3), ref, x[:4], engine=LocalEngine(threads=1))


def test_a_defended_evaluation_is_the_same_on_ray(cluster: None) -> None:
    """evaluate --defense with a deterministic transform: each Ray worker wraps its own copy of the model;
    naive and adaptive results equal one local pass, input for input."""
    from bastion.data import load_dataset
    from bastion.defenses import evaluate_defense

    ds = load_dataset("digits", split="test").take(40, seed=6)
    ref = ModelRef.create("zoo:digits-cnn")
    threat = ThreatModel("linf", 0.2, bounds=ref.load().bounds)
    runs = {
        name: evaluate_defense(
            ref, ds.x, ds.y, threat, "jpeg:75", "fast", seed=1, engine=engine, shard_size=size
        )
        for name, engine, size in (("ray", RayEngine(workers=2), 15), ("local", LocalEngine(threads=1), 40))
    }
    for part in ("naive", "adaptive"):
        a, b = getattr(runs["ray"], part), getattr(runs["local"], part)
        assert torch.equal(a.robust, b.robust) and torch.equal(a.x_adv, b.x_adv), part
    assert runs["ray"].adaptive.extra["engine"]["shards"] == 3
    assert runs["local"].naive.robust_accuracy > runs["local"].adaptive.robust_accuracy  # the defense masks


def test_a_text_cascade_is_the_same_on_ray(cluster: None, tmp_path: Path) -> None:
    """A scikit-learn text pipeline from a factory file, loaded by each Ray worker from its hashed file
    (behind the sanitiser): the sharded cascade equals one local pass, text for text."""
    from bastion.engine import TextModelRef, evaluate_text_sharded
    from bastion.text import evaluate_text
    from bastion.text.sanitise import SanitisedTextClassifier

    net = tmp_path / "reviews.py"
    net.write_text(
        "from sklearn.feature_extraction.text import CountVectorizer\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\n\n\ndef build():\n"
        "    pos = ['a great film', 'great acting', 'a wonderful story', 'wonderful cast']\n"
        "    neg = ['a terrible film', 'terrible acting', 'an awful story', 'awful cast']\n"
        "    model = make_pipeline(CountVectorizer(), LogisticRegression(C=10))\n"
        "    return model.fit(pos + neg, [1] * 4 + [0] * 4)\n"
    )
    texts = ["a great film", "great acting and a wonderful story", "a terrible film", "awful acting",
             "wonderful", "terrible , awful", "the cast was great", "an awful film"]  # fmt: skip
    labels = [1, 1, 0, 0, 1, 0, 1, 0]
    ref = TextModelRef.create(f"{net}:build", sanitise=True)
    stages = ("invisible", "homoglyph", "deepwordbug")
    on_ray = evaluate_text_sharded(ref, texts, labels, "paper", attacks=stages, seed=3, shard_size=3,
                                   engine=RayEngine(workers=2))  # fmt: skip
    local = evaluate_text(SanitisedTextClassifier(ref.load().model), texts, labels, "paper", attacks=stages,
                          seed=3)  # fmt: skip
    assert on_ray.adversarials == local.adversarials and torch.equal(on_ray.fooled, local.fooled)
    assert [s.fooled for s in on_ray.stages] == [s.fooled for s in local.stages]
    assert on_ray.stages[2].fooled > 0 and on_ray.stages[0].fooled == 0  # typos pass, invisible ones not
    assert on_ray.extra["engine"]["shards"] == 3
    # one attack on its own, as `bastion attack` and the text audit run it
    from bastion.engine import attack_text_sharded
    from bastion.text.registry import make_text_attack

    single = attack_text_sharded("deepwordbug", "paper", ref, texts, labels, seed=3, shard_size=3,
                                 engine=RayEngine(workers=2))  # fmt: skip
    attack, threat = make_text_attack("deepwordbug", "paper")
    whole = attack(SanitisedTextClassifier(ref.load().model), texts, labels, threat, seed=3)
    assert single.adversarials == whole.adversarials and torch.equal(single.success, whole.success)


TABULAR = """
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier


def records(n=240):
    g = np.random.default_rng(0)
    x = np.stack([10 * g.random(n), g.integers(0, 21, n), g.integers(0, 3, n), g.random(n)], 1)
    y = (x[:, 0] / 10 + x[:, 1] / 20 + (x[:, 2] == 1) * 0.5 + x[:, 3] > 1.6).astype(int)
    return x, y


def build():
    x, y = records()
    return HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
"""


def test_a_tabular_cascade_is_the_same_on_ray(cluster: None, tmp_path: Path) -> None:
    """A boosted-tree factory file (no gradients, no encoder: MoEvA takes the spread of all the records),
    rebuilt by each Ray worker over the schema's JSON: the sharded cascade equals one local pass."""
    from bastion.engine import TabularModelRef, evaluate_tabular_sharded
    from bastion.tabular import Feature, MoEvA, TabularCascade, TabularSchema, TabularThreatModel

    schema = TabularSchema(
        features=(
            Feature("a", "numeric", low=0, high=10),
            Feature("b", "integer", low=0, high=20),
            Feature("c", "categorical", categories=("x", "y", "z")),
            Feature("d", "numeric", immutable=True),
        ),
        classes=("0", "1"),
    )
    threat = TabularThreatModel(schema, max_change={"a": 1.5, "b": 3}, budget=0.4)
    net = tmp_path / "boosted.py"
    net.write_text(TABULAR)
    namespace: dict[str, Any] = {}
    exec(TABULAR, namespace)
    x, y = (torch.as_tensor(v) for v in namespace["records"](120))
    x = x.double()
    ref = TabularModelRef.create(f"{net}:build", schema)
    cascade = TabularCascade((MoEvA(population=10, generations=5),))
    on_ray = evaluate_tabular_sharded(cascade, ref, x, y, threat, seed=2, shard_size=50,
                                      engine=RayEngine(workers=2))  # fmt: skip
    local = cascade(ref.load(), x, y, threat, seed=2)
    assert torch.equal(on_ray.result.x_adv, local.result.x_adv)
    assert torch.equal(on_ray.result.success, local.result.success) and bool(local.result.valid.all())
    assert on_ray.stages[0].successes == local.stages[0].successes > 0
    assert on_ray.result.params["engine"]["shards"] == 3


def test_the_text_audit_and_a_tabular_attack_from_the_command_line_on_ray(
    cluster: None, tmp_path: Path
) -> None:
    """The commands themselves with --engine ray (workers load the models from their factory files):
    the text audit's rows and a tabular attack's records equal the local runs'."""
    import json

    from cli_inproc import bastion
    from test_tabular_attack_cli import _files as tabular_files
    from test_text_attack_cli import _files as text_files

    model, data = text_files(tmp_path)
    audit = ("audit", f"{model}:build", f"csv:{data}", "--text-column", "review", "--text-attacks",
             "invisible,deepwordbug", "--text-presets", "paper")  # fmt: skip
    rows = []
    for name, extra in (("ray", ("--engine", "ray", "--workers", "2")), ("local", ())):
        res = bastion(*audit, *extra, "--out", str(tmp_path / name))
        assert res.returncode in (0, 1), res.stderr
        text = json.loads((tmp_path / name / "report.json").read_text())["text"]
        rows.append([(r["attack"], r["success_rate"], r["mean_queries"]) for r in text["attacks"]])
        rows[-1].append(text["sanitiser"]["rows"])
    assert rows[0] == rows[1] and rows[0][1][1] > 0
    t_model, t_data, schema = tabular_files(tmp_path)
    attack = ("attack", f"{t_model}:build", f"csv:{t_data}", "--schema", str(schema), "--attack", "moeva")
    out = []
    for name, extra in (("ray", ("--engine", "ray", "--workers", "2", "--shard-size", "30")), ("local", ())):
        res = bastion(*attack, *extra, "--json", str(tmp_path / f"{name}.json"))
        assert res.returncode == 0, res.stderr
        out.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert out[0]["examples"] == out[1]["examples"] and out[0]["success_rate"] == out[1]["success_rate"] > 0
    assert out[0]["params"]["engine"]["engine"] == "ray"


def _numbers(report: Any) -> Any:
    """report.json without its clocks (wall time differs from run to run, nothing else may)."""
    timing = {"timing", "seconds", "log", "created", "generated_at", "environment"}

    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in timing and not k.endswith("_seconds")}
        return [strip(v) for v in o] if isinstance(o, list) else o

    return strip(report.to_dict())


@pytest.mark.slow  # ~30 s of small Ray tasks; test_engine_local checks the audit's batches in the suite
def test_the_same_audit_on_one_and_two_workers_reports_the_same_numbers(
    cluster: None, tmp_path: Path
) -> None:
    from dataclasses import replace

    from bastion.audit import AuditConfig, run_audit
    from bastion.data import load_dataset
    from bastion.engine.batches import AttackBatches

    ds = load_dataset("digits", split="test")
    ref = ModelRef.create("zoo:digits-cnn")
    cfg = replace(AuditConfig(), limit=40, preset="fast", seed=0, batch_size=20, curve=False,
                  threats=(("linf", 0.1),))  # fmt: skip
    reports = {}
    for name, engine in {"ray-1": RayEngine(workers=1), "ray-2": RayEngine(workers=2),
                         "local": LocalEngine(threads=1)}.items():  # fmt: skip
        batches = AttackBatches(engine, ref.load(), ref, tmp_path / name if name == "local" else None)
        reports[name] = _numbers(run_audit(ref.load(), ds, cfg, batches=batches))
        assert batches.calls > 3  # the cascade, the probes and the checks all went through the engine
    assert reports["ray-1"] == reports["ray-2"] == reports["local"]
    again = AttackBatches(LocalEngine(threads=1), ref.load(), ref, tmp_path / "local")
    assert _numbers(run_audit(ref.load(), ds, cfg, batches=again)) == reports["local"]
    assert again.resumed > 0 and again.resumed == sum(1 for _ in (tmp_path / "local").glob("*/shard-*"))
