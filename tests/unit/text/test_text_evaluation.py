"""``evaluate_text``: the cascade's bookkeeping (each stage attacks only what is still standing, the
stages' flips add up to the accuracy lost), verified adversarials, seeds, and honest 'not run' stages."""

from __future__ import annotations

import pytest
import torch
from test_text_char_attacks import LABELS, TEXTS, BagOfWords

from bastion.errors import AttackError, DataError
from bastion.text import TextThreatModel, evaluate_text, violations
from bastion.text.attacks import InvisibleCharacters
from bastion.text.registry import TEXT_ATTACKS

CHAR = ("invisible", "homoglyph", "deepwordbug")


def test_cascade_bookkeeping_and_verified_adversarials() -> None:
    model = BagOfWords()
    ev = evaluate_text(model, TEXTS, LABELS, "paper", attacks=CHAR, seed=1)
    correct = model(TEXTS).argmax(1) == torch.tensor(LABELS)
    assert ev.clean_accuracy == pytest.approx(float(correct.float().mean()))
    assert ev.robust_accuracy == pytest.approx(float((correct & ~ev.fooled).float().mean()))
    assert sum(s.fooled for s in ev.stages) == int(correct.sum()) - round(ev.robust_accuracy * len(TEXTS))
    standing = int(correct.sum())
    for s in ev.stages:  # each stage attacks exactly what the earlier ones left
        assert s.status == "ran" and s.attacked == standing
        standing -= s.fooled
    assert ev.complete and ev.robust_accuracy < ev.clean_accuracy
    for i, by in enumerate(ev.fooled_by):
        if by is None:
            assert ev.adversarials[i] == TEXTS[i] and not bool(ev.fooled[i])
            continue
        threat = TextThreatModel.for_attack(TEXT_ATTACKS[by].family)
        assert violations(TEXTS[i], ev.adversarials[i], threat) == []
        assert int(model([ev.adversarials[i]]).argmax()) != LABELS[i]
    # The cascade is at least as strong as its first stage alone (which sees the same texts).
    alone = InvisibleCharacters()(model, TEXTS, LABELS, TextThreatModel.for_attack("invisible"), seed=1)
    assert ev.robust_accuracy <= alone.robust_accuracy
    again = evaluate_text(model, TEXTS, LABELS, "paper", attacks=CHAR, seed=1)
    assert again.adversarials == ev.adversarials and torch.equal(again.fooled, ev.fooled)


def test_missing_resource_is_reported_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.text.evaluation as evaluation

    real = evaluation.make_text_attack

    def missing_pwws(name: str, preset: str, **kw: object):  # type: ignore[no-untyped-def]
        if name == "pwws":
            raise DataError("WordNet not found: apt-get install wordnet-base")
        return real(name, preset, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluation, "make_text_attack", missing_pwws)
    ev = evaluate_text(BagOfWords(), TEXTS, LABELS, "strict", attacks=("invisible", "pwws"))
    stage = ev.stages[1]
    assert stage.status == "not run" and "wordnet-base" in (stage.reason or "")
    assert not ev.complete and ev.to_dict()["complete"] is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"preset": "loose"}, "preset"), ({"attacks": ("pgd",)}, "pgd"), ({"attacks": ()}, "no text attacks")],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(AttackError, match=message):
        evaluate_text(BagOfWords(), TEXTS, LABELS, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="labels"):
        evaluate_text(BagOfWords(), TEXTS, LABELS[:2])
