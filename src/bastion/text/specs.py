"""Text models named the way the command line names them: ``zoo:NAME`` (or a bare text-zoo name),
``oip:http://HOST/models/NAME`` (served over the Open Inference Protocol, texts sent as BYTES) or
``FILE.py:factory`` / ``package.module:factory`` returning a text classifier. Shared by the command line
and by the shard runner's workers, which load a text model from its spec (never from a pickle)."""

from __future__ import annotations

from typing import Any

from bastion.errors import ModelContractError

__all__ = ["load_text_model_spec"]


def load_text_model_spec(spec: str) -> Any:
    """A text classifier from ``zoo:NAME`` or ``TARGET:factory`` (see the module docstring)."""
    from bastion.loading import factory_object
    from bastion.text.model import as_text_classifier
    from bastion.text.zoo import TEXT_ZOO, load_text_model

    if spec.startswith("oip:"):  # a text model served over the Open Inference Protocol (BYTES input)
        from bastion.remote import load_remote_text

        return load_remote_text(spec)
    if spec.startswith("zoo:"):
        return load_text_model(spec[4:])
    if spec in TEXT_ZOO:
        return load_text_model(spec)
    target, sep, factory = spec.rpartition(":")
    if not sep or not target:
        raise ModelContractError(
            f"text model spec {spec!r}: use zoo:NAME ({', '.join(TEXT_ZOO)}), oip:http://HOST/models/NAME or "
            "FILE.py:factory returning a text classifier"
        )
    return as_text_classifier(factory_object(target, factory))
