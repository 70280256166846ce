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
