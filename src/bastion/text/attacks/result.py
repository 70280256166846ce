"""What a text attack returns: the edited texts, verified, with the numbers the field reports."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.text.threat import TextThreatModel
from bastion.text.words import split_words

__all__ = ["TextAttackResult", "show_edit"]


def _visible(s: str) -> str:
    # Invisible and look-alike characters are the attack: show them as code points, not as nothing.
    return "".join(c if c.isascii() and c.isprintable() else f"<U+{ord(c):04X}>" for c in s)


def show_edit(original: str, adversarial: str) -> str:
    """``adversarial`` with each changed word shown as ``[old -> new]`` (non-ASCII characters as
    ``<U+XXXX>``, so a zero-width space or a Cyrillic 'а' is visible in a report)."""
    a, b = split_words(original), split_words(adversarial)
    out: list[str] = []
    pos = 0
    ops = difflib.SequenceMatcher(a=[w.text for w in a], b=[w.text for w in b], autojunk=False).get_opcodes()
    for op, i1, i2, j1, j2 in ops:
        if op == "equal":
            continue
        start = b[j1].start if j1 < j2 else (b[j1 - 1].end if j1 > 0 else 0)
        end = b[j2 - 1].end if j1 < j2 else start
        old = " ".join(w.text for w in a[i1:i2])
        new = adversarial[start:end]
        out.append(adversarial[pos:start])
        out.append(f"[{_visible(old)} -> {_visible(new)}]")
        pos = end
    out.append(adversarial[pos:])
    return "".join(out)


@dataclass(frozen=True)
class TextAttackResult:
    """Produced by :class:`bastion.text.attacks.TextAttack` only.

    Per text (N of them): ``adversarials`` (the original where the attack failed or was not run),
    ``clean_predictions`` / ``predictions`` (the model's labels before / after), ``valid`` (the pair
    satisfies ``threat``, checked by the verifier, not by the attack; ``violations`` says why not),
    ``success`` (correct before, wrong after, valid and changed), ``queries`` (strings sent, the clean one
    included), ``words_changed`` and ``chars_changed`` (Levenshtein distance).
    """

    originals: tuple[str, ...]
    adversarials: tuple[str, ...]
    labels: torch.Tensor
    clean_predictions: torch.Tensor
    predictions: torch.Tensor
    success: torch.Tensor
    valid: torch.Tensor
    violations: tuple[tuple[str, ...], ...]
    queries: torch.Tensor
    words_changed: torch.Tensor
    chars_changed: torch.Tensor
    attack: str
    threat: TextThreatModel
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.originals)

    @property
    def clean_correct(self) -> torch.Tensor:
        return self.clean_predictions == self.labels

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean())

    @property
    def robust_accuracy(self) -> float:
        """Share of all texts still classified correctly after the attack (only valid edits count)."""
        return float((self.clean_correct & ~self.success).float().mean())

    @property
    def success_rate(self) -> float:
        """Share of the texts the model got right that the attack flipped with a valid edit."""
        n = int(self.clean_correct.sum())
        return float(self.success.sum()) / n if n else 0.0

    def _attacked_mean(self, values: torch.Tensor, only_success: bool) -> float:
        mask = self.success if only_success else self.clean_correct
        return float(values[mask].float().mean()) if bool(mask.any()) else 0.0

    @property
    def mean_queries(self) -> float:
        """Mean strings sent per attacked text (the ones the model got right)."""
        return self._attacked_mean(self.queries, only_success=False)

    @property
    def mean_words_changed(self) -> float:
        """Mean share of words changed over successful adversarials."""
        n = torch.tensor([max(len(split_words(t)), 1) for t in self.originals], dtype=torch.float32)
        return self._attacked_mean(self.words_changed / n, only_success=True)

    @property
    def mean_chars_changed(self) -> float:
        return self._attacked_mean(self.chars_changed, only_success=True)

    def show(self, i: int) -> str:
        """Text ``i``'s edit, changed words marked, with the verdict."""
        verdict = (
            "success"
            if bool(self.success[i])
            else "invalid: " + "; ".join(self.violations[i])
            if self.violations[i]
            else "failed"
        )
        return f"{show_edit(self.originals[i], self.adversarials[i])}  ({verdict})"

    def summary(self) -> dict[str, Any]:
        """The numbers a report prints, JSON-ready."""
        return {
            "attack": self.attack,
            "threat": self.threat.to_dict(),
            "threat_description": self.threat.describe(),
            "n": len(self),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "invalid": int((~self.valid).sum()),
            "mean_queries": self.mean_queries,
            "mean_words_changed": self.mean_words_changed,
            "mean_chars_changed": self.mean_chars_changed,
            "params": self.params,
            "seed": self.seed,
            "seconds": self.seconds,
        }
