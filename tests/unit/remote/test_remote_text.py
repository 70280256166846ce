"""Text models over the Open Inference Protocol: texts as a BYTES tensor, the answer as logits, every
query counted, the text attacks and ``bastion attack`` running against the remote model unchanged."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from _oip_server import serve
from typer.testing import CliRunner

from bastion.errors import RemoteModelError

pytest.importorskip("httpx")  # the remote extra: pip install 'bastion[remote]'

WEIGHTS = {"good": 2.0, "great": 2.5, "fun": 1.5, "bad": -2.0, "awful": -2.5, "dull": -1.5}
TEXTS = ["a good film with a dull start", "the plot was awful", "great fun despite a bad ending",
         "dull and bad", "good", "caf\u00e9 na\u00efve: great \u2728"]  # fmt: skip
LABELS = [1, 0, 1, 0, 1, 1]


def bag_of_words(texts: Sequence[str]) -> torch.Tensor:
    s = torch.tensor([sum(WEIGHTS.get(t, 0.0) for t in re.findall(r"\w+", x.lower())) + 0.1 for x in texts])
    return torch.stack([-s, s], dim=1)


def _serve(**options: object):  # type: ignore[no-untyped-def]
    return serve(bag_of_words, name="sentiment", datatype="BYTES", row_shape=(), num_classes=2,
                 input_name="text", **options)  # fmt: skip


def test_texts_travel_as_bytes_and_every_one_is_counted() -> None:
    from bastion.remote import load_remote_text

    with _serve() as server:
        model = load_remote_text(server.spec() + "?max_rps=none&batch_size=4")
        assert model.num_classes == 2 and model.input_name == "text"  # from the metadata
        assert torch.allclose(model(TEXTS), bag_of_words(TEXTS))  # non-ASCII text arrives intact
        assert model.queries == len(TEXTS) and [p[3] for p in server.posts()] == [4, 2]
    with _serve(outputs="probabilities") as server:
        model = load_remote_text(server.spec() + "?max_rps=none&outputs=probabilities")
        assert torch.allclose(model(TEXTS).softmax(1), bag_of_words(TEXTS).softmax(1), atol=1e-6)


def test_a_text_attack_runs_against_the_remote_model() -> None:
    from bastion.remote import load_remote_text
    from bastion.text.attacks import InvisibleCharacters

    with _serve() as server:
        model = load_remote_text(server.spec() + "?max_rps=none")
        result = InvisibleCharacters()(model, TEXTS, LABELS, seed=0)
        assert result.success_rate > 0 and int(result.queries.sum()) <= model.queries
        fooled = result.success.nonzero().flatten().tolist()
        assert all(bag_of_words([result.adversarials[i]]).argmax() != LABELS[i] for i in fooled)


def test_a_mismatched_client_is_one_line_naming_the_other() -> None:
    from bastion.remote import load_remote, load_remote_text

    with _serve() as server, pytest.raises(RemoteModelError, match=r"BYTES.*RemoteTextClassifier"):
        load_remote(server.spec())
    image_model = serve(lambda x: x.flatten(1)[:, :2])
    with image_model as server, pytest.raises(RemoteModelError, match=r"FP32.*BYTES.*RemoteClassifier"):
        load_remote_text(server.spec())


def test_bastion_attack_takes_an_oip_text_model(tmp_path: Path) -> None:
    import bastion.cli.app as cli

    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in zip(TEXTS, LABELS, strict=True)),
                    encoding="utf-8")  # fmt: skip
    out = tmp_path / "r.json"
    with _serve() as server:
        res = CliRunner().invoke(cli.app, ["attack", server.spec() + "?max_rps=none", f"csv:{data}",
                                           "--attack", "invisible", "--json", str(out)])  # fmt: skip
        assert res.exit_code == 0, res.output
        summary = json.loads(out.read_text())
        assert summary["n"] == len(TEXTS) and summary["success_rate"] > 0
        assert math.isclose(summary["clean_accuracy"], 1.0)
        assert len(server.posts()) >= 1 + sum(1 for _ in summary["examples"])
