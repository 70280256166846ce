"""Attack-then-augment adversarial training: on a synthetic sentiment task whose attack swaps each
sentiment word for a synonym the model never saw, augmentation must restore accuracy under the attack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bastion.errors import AttackError
from bastion.text.adversarial_training import (
    adversarial_augmentation,
    adversarial_train,
    train_text_classifier,
)
from bastion.text.attacks import PWWS
from bastion.text.data import TextData
from bastion.text.threat import TextThreatModel
from bastion.text.tokenizer import WordTokenizer
from bastion.text.zoo import TextZooSpec

POSITIVE = {"good": "fine", "great": "superb", "nice": "lovely", "happy": "glad"}
NEGATIVE = {"bad": "lousy", "awful": "dire", "poor": "weak", "sad": "gloomy"}
FILLER = ["movie", "plot", "actor", "scene", "story", "film", "music", "camera", "script", "cast"]
SPEC = TextZooSpec("synthetic", "train", "test", net={"embed_dim": 16, "widths": (1, 2), "filters": 8},
                   epochs=12, batch_size=16, lr=1e-2, max_len=16)  # fmt: skip
THREAT = TextThreatModel.for_attack("pwws")


class SynonymLexicon:
    """Each sentiment word has one synonym, which never occurs in the clean training texts."""

    def synonyms(self, word: str, pos: str | None = None) -> list[str]:
        s = {**POSITIVE, **NEGATIVE}.get(word)
        return [s] if s else []


def synthetic(n: int, seed: int) -> TextData:
    """``n`` texts: 3-5 neutral words and one sentiment word at a random place; label = its polarity."""
    g = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(torch.randint(0, 2, (1,), generator=g))
        words = list(POSITIVE if label else NEGATIVE)
        k = int(torch.randint(3, 6, (1,), generator=g))
        sent = [FILLER[int(i)] for i in torch.randint(0, len(FILLER), (k,), generator=g)]
        sent.insert(
            int(torch.randint(0, k + 1, (1,), generator=g)),
            words[int(torch.randint(0, 4, (1,), generator=g))],
        )
        texts.append(" ".join(sent))
        labels.append(label)
    return TextData(tuple(texts), torch.tensor(labels), ("negative", "positive"), name="synthetic")


def test_augmentation_raises_accuracy_under_the_attack() -> None:
    train, test = synthetic(300, seed=0), synthetic(100, seed=1)
    model = train_text_classifier(train, SPEC, seed=0)
    attack = PWWS(lexicon=SynonymLexicon())
    before = attack(model, list(test.texts), test.labels, THREAT)
    assert before.clean_accuracy == 1.0  # the task is easy: every failure below is the attack's doing
    assert before.robust_accuracy < 0.8  # the unseen synonym reads as <unk>: many flips
    out = adversarial_train(model, train, SPEC, attack, THREAT, sample=150, seed=0)
    assert out.added == int(out.attack_result.success.sum()) > 0
    # every added text is an attack success, labelled with its true label, containing a synonym
    for text, label in zip(out.adversarials.texts, out.adversarials.labels.tolist(), strict=True):
        assert any(s in text.split() for s in (POSITIVE if label else NEGATIVE).values())
    after = attack(out.model, list(test.texts), test.labels, THREAT)
    assert after.clean_accuracy == 1.0
    assert after.robust_accuracy >= 0.95
    assert after.robust_accuracy >= before.robust_accuracy + 0.15


def test_augmentation_sample_is_seeded_and_validated() -> None:
    train = synthetic(120, seed=2)
    model = train_text_classifier(train, SPEC, seed=0)
    attack = PWWS(lexicon=SynonymLexicon())
    a, ra = adversarial_augmentation(model, train, attack, THREAT, sample=40, seed=3)
    b, rb = adversarial_augmentation(model, train, attack, THREAT, sample=40, seed=3)
    _, rc = adversarial_augmentation(model, train, attack, THREAT, sample=40, seed=4)
    assert len(ra) == 40 and ra.originals == rb.originals and a.texts == b.texts
    assert ra.originals != rc.originals
    assert set(ra.originals) <= set(train.texts)
    assert a.meta["attack"] == "pwws" and a.meta["sample"] == 40
    with pytest.raises(AttackError, match="sample"):
        adversarial_augmentation(model, train, attack, THREAT, sample=0)


def test_training_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    train = synthetic(80, seed=5)
    state = torch.get_rng_state()
    m1 = train_text_classifier(train, SPEC, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    m2 = train_text_classifier(train, SPEC, seed=7)
    m3 = train_text_classifier(train, SPEC, seed=8)
    p1, p2, p3 = (dict(m.module.state_dict()) for m in (m1, m2, m3))
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert not all(torch.equal(p1[k], p3[k]) for k in p1)
    assert all(torch.equal(v, v.half().float()) for v in p1.values())  # float16-rounded, as the zoo
    assert not m1.module.training


DATA = Path(os.environ.get("BASTION_DATA", Path(__file__).resolve().parents[4] / "shared" / "data"))


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "text" / "sms_spam.csv.gz").is_file(), reason="needs ../shared/data/text")
def test_restated_recipe_reproduces_the_sms_spam_zoo_model() -> None:
    from bastion.text.data import load_text_dataset
    from bastion.text.zoo import TEXT_ZOO, load_text_model

    if torch.get_num_threads() != 1:
        pytest.skip("the zoo model was trained on one thread; run with OMP_NUM_THREADS=1")
    train = load_text_dataset("sms-spam", "train", DATA)
    ours = train_text_classifier(train, TEXT_ZOO["sms-spam-wordcnn"], seed=0)
    zoo = load_text_model("sms-spam-wordcnn")
    assert isinstance(ours.tokenizer, WordTokenizer) and isinstance(zoo.tokenizer, WordTokenizer)
    assert ours.tokenizer.vocab == zoo.tokenizer.vocab
    theirs = zoo.module.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.module.state_dict().items())
