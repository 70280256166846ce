"""Text attacks by name, each built with the offline resources its threat model needs.

``make_text_attack("pwws", preset="strict")`` returns the attack and the threat model (the attack's
``paper`` or ``strict`` preset) with WordNet, GloVe and the sentence encoder loaded only when that threat
or attack uses them. The CLI and the benchmarks build attacks here, so a name means the same everywhere.
"""

from __future__ import annotations

from typing import Literal

from bastion.errors import AttackError
from bastion.text.attacks import PWWS, DeepWordBug, Homoglyphs, InvisibleCharacters, TextAttack, TextFooler
from bastion.text.threat import TextThreatModel

__all__ = ["PRESETS", "TEXT_ATTACKS", "make_text_attack"]

TEXT_ATTACKS: dict[str, type[TextAttack]] = {
    "deepwordbug": DeepWordBug,
    "invisible": InvisibleCharacters,
    "homoglyph": Homoglyphs,
    "textfooler": TextFooler,
    "pwws": PWWS,
}
PRESETS = ("paper", "strict")
Preset = Literal["paper", "strict"]


def make_text_attack(
    name: str, preset: Preset | str = "paper", *, max_queries: int | None = None
) -> tuple[TextAttack, TextThreatModel]:
    """The attack ``name`` and its ``preset`` threat model, with the resources both need loaded."""
    from bastion.text.resources import offline_resources

    key = name.strip().lower()
    if key not in TEXT_ATTACKS:
        raise AttackError(f"unknown text attack {name!r}; use one of: {', '.join(TEXT_ATTACKS)}")
    if preset not in PRESETS:
        raise AttackError(f"unknown preset {preset!r}; use paper (the paper's thresholds) or strict")
    cls = TEXT_ATTACKS[key]
    threat = TextThreatModel.for_attack(cls.family, strict=preset == "strict")
    resources = offline_resources(threat, embeddings=key == "textfooler")
    return cls(resources=resources, max_queries=max_queries), threat
