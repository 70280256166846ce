"""Attack-quality checks (BA2xx): is the evaluation itself trustworthy?

Each check compares what the white-box attacks found with what a weaker or different attacker found;
a sound evaluation is never beaten by a weaker one (Carlini et al. 2019, §5.2; Athalye et al. 2018).
Thresholds: a "beats" check fires when the other attacker fooled at least ``max(2, 1%)`` of the inputs
the white-box attacks could not, so one borderline input on a sound model is not an alarm.
"""

from __future__ import annotations

import itertools
import math

from bastion.audit.findings import Finding, finding

__all__ = ["beats_white_box", "material", "monotone_in_epsilon", "unbounded_reaches_all"]

UNBOUNDED_SUCCESS = 0.99  # an unbounded attack must fool (almost) every input


def material(count: int, n: int) -> bool:
    """Whether ``count`` of ``n`` inputs is more than noise: at least 2 and at least 1%."""
    return count >= max(2, math.ceil(0.01 * n))


_BEATS = {
    "fgsm": "BA203",
    "stronger": "BA204",
    "square": "BA205",
    "transfer": "BA206",
    "noise": "BA207",
    "bpda": "BA208",
}
_WHO = {
    "fgsm": "FGSM (one step)",
    "stronger": "the white-box attacks with twice the steps",
    "square": "Square (scores only)",
    "transfer": "a transfer attack from a distilled surrogate",
    "noise": "random noise on the epsilon-sphere",
    "bpda": "the white-box attacks with BPDA and EOT through the defense",
}


def beats_white_box(kind: str, fooled: int, attacked: int, n: int, *, threat: str) -> Finding | None:
    """``kind`` fooled ``fooled`` of the ``attacked`` inputs that survived the white-box attacks
    (``n`` inputs audited); a finding when that is material."""
    if not material(fooled, n):
        return None
    return finding(
        _BEATS[kind],
        f"{_WHO[kind]} fooled {fooled} of the {attacked} inputs the white-box attacks could not",
        threat=threat,
        fooled=fooled,
        attacked=attacked,
        n=n,
    )


def unbounded_reaches_all(success: int, attacked: int, norm: str) -> Finding | None:
    """BA201 when an attack with no budget fooled fewer than 99% of the inputs."""
    if attacked == 0 or success >= UNBOUNDED_SUCCESS * attacked:
        return None
    return finding(
        "BA201",
        f"with an unbounded {norm} budget the attack fooled only {success} of {attacked} inputs",
        threat=f"{norm} unbounded",
        success=success,
        attacked=attacked,
    )


def monotone_in_epsilon(curve: list[tuple[float, float]], n: int, norm: str) -> Finding | None:
    """BA202 when robust accuracy rises by a material amount as epsilon grows along ``curve``."""
    worst: tuple[float, float, float] | None = None
    for (e0, a0), (e1, a1) in itertools.pairwise(curve):
        rise = a1 - a0
        if material(round(rise * n), n) and (worst is None or rise > worst[2]):
            worst = (e0, e1, rise)
    if worst is None:
        return None
    e0, e1, rise = worst
    return finding(
        "BA202",
        f"{norm} robust accuracy rose by {rise:.1%} from epsilon {e0:g} to {e1:g}",
        threat=norm,
        epsilon_from=e0,
        epsilon_to=e1,
        rise=rise,
    )
