"""Text attacks key their random draws by the text's id, so the text cascade runs in shards (and resumes)
with the one-pass result, text for text."""

from __future__ import annotations

from pathlib import Path

import torch
from test_text_char_attacks import LABELS, TEXTS, BagOfWords

from bastion.engine import LocalEngine, evaluate_text_sharded
from bastion.text import evaluate_text
from bastion.text.attacks import DeepWordBug

CHAR = ("invisible", "homoglyph", "deepwordbug")


def test_a_text_draws_by_its_id_not_its_position() -> None:
    attack = DeepWordBug(max_candidates=3)  # a random 3 of each word's typos: the draws matter
    whole = attack(BagOfWords(), TEXTS, LABELS, seed=5)
    part = attack(BagOfWords(), TEXTS[2:5], LABELS[2:5], seed=5, example_ids=[2, 3, 4])
    assert part.adversarials == whole.adversarials[2:5]
    assert torch.equal(part.queries, whole.queries[2:5])
    others = [attack(BagOfWords(), TEXTS, LABELS, seed=5, example_ids=range(k, k + 6)) for k in (10, 20, 30)]
    assert any(o.adversarials != whole.adversarials for o in others)  # so the ids are what keys them


def test_sharded_cascade_equals_one_pass_and_resumes(tmp_path: Path) -> None:
    model = BagOfWords()
    one = evaluate_text(model, TEXTS, LABELS, "paper", attacks=CHAR, seed=1)
    runs = [
        evaluate_text_sharded(
            model,
            TEXTS,
            LABELS,
            "paper",
            attacks=CHAR,
            seed=1,
            shard_size=4,
            engine=LocalEngine(threads=1),
            run_dir=tmp_path / "run",
        )
        for _ in range(2)
    ]
    for ev in runs:
        assert ev.adversarials == one.adversarials and ev.fooled_by == one.fooled_by
        assert torch.equal(ev.fooled, one.fooled)
        assert (ev.clean_accuracy, ev.robust_accuracy) == (one.clean_accuracy, one.robust_accuracy)
        strip = [[{**s.__dict__, "seconds": 0} for s in e.stages] for e in (ev, one)]
        assert strip[0] == strip[1]
    assert runs[0].extra["engine"]["resumed"] == [] and runs[1].extra["engine"]["resumed"] == [0, 1]
    assert runs[1].to_dict()["engine"]["shards"] == 2 and "engine" not in one.to_dict()


def test_one_attack_in_shards_equals_one_call(tmp_path: Path) -> None:
    from bastion.engine import attack_text_sharded
    from bastion.text.registry import make_text_attack

    attack, threat = make_text_attack("deepwordbug", "paper")
    one = attack(BagOfWords(), TEXTS, LABELS, threat, seed=5)
    runs = [
        attack_text_sharded(
            "deepwordbug",
            "paper",
            BagOfWords(),
            TEXTS,
            LABELS,
            seed=5,
            shard_size=4,
            engine=LocalEngine(threads=1),
            run_dir=tmp_path / "run",
        )
        for _ in range(2)
    ]
    for res in runs:
        assert res.adversarials == one.adversarials and res.violations == one.violations
        for name in ("success", "valid", "queries", "predictions", "words_changed", "chars_changed"):
            assert torch.equal(getattr(res, name), getattr(one, name)), name
        assert res.success_rate == one.success_rate > 0
    assert (
        runs[1].params["engine"]["resumed"] == [0, 1] and runs[1].summary()["params"]["max_candidates"] == 32
    )


def test_the_text_audit_section_in_shards_equals_its_one_pass_rows(tmp_path: Path) -> None:
    from bastion.audit import AuditConfig, run_audit
    from bastion.audit.sections import TextSection
    from bastion.text import TextData

    data = TextData(tuple(TEXTS), torch.tensor(LABELS), ("negative", "positive"), name="toy")
    rows = []
    for engine in (None, LocalEngine(threads=1)):
        where = None if engine is None else tmp_path / "audit"
        section = TextSection(
            attacks=("invisible", "deepwordbug"),
            presets=("paper",),
            engine=engine,
            run_dir=where,
            shard_size=4,
        )
        block = run_audit(BagOfWords(), data, AuditConfig(limit=None), sections=(section,)).to_dict()["text"]
        attacks = [{k: v for k, v in r.items() if k not in ("seconds", "params")} for r in block["attacks"]]
        rows.append((attacks, block["headline"], block["sanitiser"]["rows"], block["examples"]))
    assert rows[0] == rows[1]
    # one run per attack and preset, and the sanitiser's adaptive rows in their own
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == [
        "deepwordbug-paper", "invisible-paper", "invisible-paper-sanitised"
    ]  # fmt: skip


def test_sharded_accuracies_are_the_one_pass_floats() -> None:
    """5 texts, one mislabelled: shares like 4/5 are not exact binary fractions; the merged numbers are
    computed as one pass computes them (a float32 mean), so they compare equal, not just close."""
    model, labels = BagOfWords(), [1 - LABELS[0], *LABELS[1:5]]
    one = evaluate_text(model, TEXTS[:5], labels, "paper", attacks=CHAR, seed=2)
    sharded = evaluate_text_sharded(model, TEXTS[:5], labels, "paper", attacks=CHAR, seed=2, shard_size=2)
    assert sharded.clean_accuracy == one.clean_accuracy != 4 / 5  # the float32 share, not Python's 0.8
    assert sharded.robust_accuracy == one.robust_accuracy
    assert [s.robust_accuracy for s in sharded.stages] == [s.robust_accuracy for s in one.stages]
