"""``BA210``: the cross-entropy stages fool (almost) nothing that the scale-invariant stages break.

A model with very large logits (a saturated softmax, a temperature folded into the last layer) has a
cross-entropy loss that is flat at confidently classified inputs: its input gradient underflows to zero.
The DLR, targeted and minimum-norm stages do not depend on the logits' scale, so they still
break the model and the headline stays right; but every cross-entropy tool the user also runs, and
adversarial training with a cross-entropy inner attack, is fooled. The check reads the cascade's stage
rows: in a cascade the cross-entropy stage runs first on every input, so on a healthy model it takes
most of what falls and leaves little for the stages after it.
"""

from __future__ import annotations

from typing import Any

from bastion.audit import checks
from bastion.audit.findings import Finding, finding
from bastion.audit.sections.base import CheckRun, check

__all__ = ["CE_STAGES", "SCALE_INVARIANT_STAGES", "vanishing_gradients_check"]

CE_STAGES = frozenset({"apgd-ce"})
SCALE_INVARIANT_STAGES = frozenset(
    {"apgd-t", "apgd-t-9", "apgd-dlr", "fmn", "fab", "fab-t", "deepfool", "cw"}
)
_SHARE = 0.1  # the cross-entropy stages fooled at most this share of what the others broke after them


def vanishing_gradients_check(
    row: dict[str, Any], n: int, enabled: bool
) -> tuple[Finding | None, CheckRun] | None:
    """The check on one threat's report ``row`` (``n`` inputs audited); None when it cannot apply (checks
    off, or no cross-entropy and scale-invariant stage both ran)."""
    # White-box stages only: a black-box probe that breaks what every gradient attack missed is gradient
    # masking of any kind (BA205), not the cross-entropy's scale in particular.
    stages = [s for s in row["stages"] if s.get("kind") == "white-box"]
    ce = [s for s in stages if s["attack"] in CE_STAGES]
    invariant = [s for s in stages if s["attack"] in SCALE_INVARIANT_STAGES]
    if not (enabled and ce and invariant):
        return None
    ce_fooled = sum(int(s["n_fooled"]) for s in ce)
    others = sum(int(s["n_fooled"]) for s in invariant)
    fires = checks.material(others, n) and ce_fooled <= _SHARE * others
    measured = {"cross_entropy_fooled": ce_fooled, "scale_invariant_fooled": others}
    label = row["label"]
    ran = check("BA210", label, not fires, **measured)
    if not fires:
        return None, ran
    detail = (
        f"the cross-entropy stage fooled {ce_fooled} inputs, the scale-invariant stages after it "
        f"{others} more of {n}"
    )
    return finding("BA210", detail, threat=label, **measured), ran
