"""Text zoo: the nets ignore padding, the shipped models load, match their cards and refuse tampering."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bastion.errors import ModelContractError, UnsafeArtifactError
from bastion.text import SklearnTextClassifier, TorchTextClassifier
from bastion.text import zoo as text_zoo
from bastion.text.data import TextData, load_text_dataset
from bastion.text.nets import BagOfEmbeddings, WordCNN, build_text_net
from bastion.text.tokenizer import WordTokenizer
from bastion.text.zoo import TEXT_ZOO, load_text_model, text_card, text_zoo_file, tfidf_baseline

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
needs_text = pytest.mark.skipif(
    not (SHARED / "text").is_dir(), reason="text sets not present in ../shared/data"
)
TEXTS = ["a", "the film is good", "bad", "", "an utterly dull , lifeless and overlong mess of a film ."]


@pytest.mark.parametrize("arch", ["wordcnn", "bag"])
def test_batched_logits_equal_one_by_one(arch: str) -> None:
    tok = WordTokenizer.fit(TEXTS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_text_net(arch, len(tok), 3, embed_dim=8, **({"filters": 4} if arch == "wordcnn" else {}))
    model = TorchTextClassifier(net, tok, num_classes=3, batch_size=64)
    batched = model(TEXTS)
    single = torch.cat([model([t]) for t in TEXTS])
    assert batched.shape == (5, 3)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(TorchTextClassifier(net, tok, num_classes=3, batch_size=2)(TEXTS), batched)
    assert net.training  # the wrapper restored the caller's mode


def test_wordcnn_pools_only_over_real_words() -> None:
    net = WordCNN(10, 2, embed_dim=4, widths=(3,), filters=2, dropout=0.0).eval()
    conv = net.convs[0]
    assert isinstance(conv, torch.nn.Conv1d) and conv.bias is not None
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(100.0)  # a window of padding alone scores 100 and would win the max
        net.embedding.weight[2:4].fill_(-10.0)  # each word in a window takes 4 * 10 off
        out = net(torch.tensor([[2, 3, 0, 0, 0, 0]]))
        expected = net.fc(torch.tensor([[60.0, 60.0]]))  # best windows hold one word (and padding)
    torch.testing.assert_close(out, expected)
    assert isinstance(build_text_net("bag", 5, 2), BagOfEmbeddings)
    with pytest.raises(ModelContractError, match="choose one of: wordcnn, bag"):
        build_text_net("lstm", 5, 2)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ModelContractError, match="choose one of: sst2-wordcnn, sms-spam-wordcnn"):
        load_text_model("bert")


@pytest.mark.parametrize("name", sorted(TEXT_ZOO))
def test_zoo_cards_are_complete(name: str) -> None:
    card = text_card(name)
    spec = TEXT_ZOO[name]
    assert card["dataset"]["name"] == spec.dataset and card["dataset"]["eval_split"] == spec.eval_split
    assert len(card["dataset"]["file_sha256"]) == 64 and card["seed"] == 0
    assert card["recipe"]["epochs"] == spec.epochs and card["command"].startswith("OMP_NUM_THREADS=1")
    size = Path(str(text_zoo_file(name, ".safetensors"))).stat().st_size
    assert size < 3_000_000  # the shipped weights stay small
    model = load_text_model(name)
    assert isinstance(model, TorchTextClassifier) and model.num_classes == card["num_classes"]


@needs_text
@pytest.mark.parametrize("name", sorted(TEXT_ZOO))
def test_zoo_models_reach_their_card_accuracy(name: str) -> None:
    spec, card = TEXT_ZOO[name], text_card(name)
    data = load_text_dataset(spec.dataset, spec.eval_split, SHARED)
    # the card's number is over the whole split; the same weights and code give exactly it
    model = load_text_model(name)
    acc = float((model(list(data.texts)).argmax(1) == data.labels).float().mean())
    assert acc == pytest.approx(card["clean_accuracy"], abs=2e-3)
    assert card["n_eval"] == len(data)
    first = data.subset(range(300))
    acc300 = float((model(list(first.texts)).argmax(1) == first.labels).float().mean())
    assert acc300 >= {"sst2": 0.75, "sms-spam": 0.95}[spec.dataset]


def test_tampered_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "sms-spam-wordcnn"
    for suffix in (".safetensors", ".vocab.json", ".json"):
        shutil.copy(str(text_zoo_file(name, suffix)), tmp_path / f"text-{name}{suffix}")
    monkeypatch.setattr(text_zoo, "text_zoo_file", lambda n, s: tmp_path / f"text-{n}{s}")
    load_text_model(name)  # the copies load
    vocab = tmp_path / f"text-{name}.vocab.json"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace('"free"', '"frее"'), encoding="utf-8")
    with pytest.raises(UnsafeArtifactError, match="vocabulary of text zoo model 'sms-spam-wordcnn'"):
        load_text_model(name)
    weights = tmp_path / f"text-{name}.safetensors"
    weights.write_bytes(weights.read_bytes()[:-2] + b"\x00\x00")
    with pytest.raises(UnsafeArtifactError, match="weights of text zoo model"):
        load_text_model(name)


def test_tfidf_baseline_learns_a_toy_task() -> None:
    spam = [f"win a free prize now {i}" for i in range(20)] + [
        f"claim your cash reward {i}" for i in range(20)
    ]
    ham = [f"see you at lunch {i}" for i in range(20)] + [f"call mum about dinner {i}" for i in range(20)]
    data = TextData(tuple(ham + spam), torch.tensor([0] * 40 + [1] * 40), ("ham", "spam"))
    model = tfidf_baseline(data, seed=0)
    assert isinstance(model, SklearnTextClassifier) and model.num_classes == 2
    logits = model(["free prize for you", "lunch with mum", "fr\u200bee pr\u200bize"])
    assert logits.argmax(1).tolist()[:2] == [1, 0]
    assert torch.equal(
        logits,
        tfidf_baseline(data, seed=0)(["free prize for you", "lunch with mum", "fr\u200bee pr\u200bize"]),
    )


@needs_text
def test_tfidf_baseline_on_sms_spam() -> None:
    train = load_text_dataset("sms-spam", "train", SHARED)
    test = load_text_dataset("sms-spam", "test", SHARED)
    acc = float((tfidf_baseline(train)(list(test.texts)).argmax(1) == test.labels).float().mean())
    assert acc >= 0.97
