"""Which of a class's two groups is the poison? The one whose label survives being overlaid.

The data scanners split a suspicious class in two groups; Chen et al. (2018) flag the smaller one,
which fails as soon as the poison outnumbers the class's clean samples (BadNets at 10% of MNIST puts
6,000 triggered images into a class of 5,923). A backdoor's defining property decides it instead: a
triggered input keeps its target label whatever else is in the picture (the observation behind STRIP,
Gao et al. 2019), while a clean input superimposed with an image of another class often changes label.
:func:`label_persistence` measures that per group; a genuine clean subpopulation (a writing style)
shows no difference, and the scanners then keep the minority rule.
"""

from __future__ import annotations

import torch

from bastion.detect.strip import superimpose
from bastion.model import Classifier

__all__ = ["label_persistence"]


@torch.no_grad()
def label_persistence(
    model: Classifier,
    x: torch.Tensor,
    label: int,
    overlays: torch.Tensor,
    *,
    max_inputs: int = 200,
    generator: torch.Generator | None = None,
    batch_size: int = 512,
) -> float:
    """Share of (input, overlay) pairs that ``model`` still classifies as ``label``.

    ``x`` (n, ...) are inputs of one group (at most ``max_inputs`` of them, a seeded sample, are used);
    ``overlays`` (m, ...) are inputs of *other* classes. Each pair is blended as STRIP does
    (:func:`bastion.detect.strip.superimpose`), which keeps a saturated trigger intact. Returns a share in
    [0, 1]; 0 for an empty group.
    """
    if x.shape[0] == 0 or overlays.shape[0] == 0:
        return 0.0
    if x.shape[0] > max_inputs:
        pick = torch.randperm(x.shape[0], generator=generator)[:max_inputs]
        x = x[pick.to(x.device)]
    hits, total = 0, 0
    per = max(1, batch_size // overlays.shape[0])
    for i in range(0, x.shape[0], per):
        blended = superimpose(x[i : i + per], overlays, model.bounds).flatten(0, 1)
        hits += int((model(blended).argmax(1) == label).sum())
        total += blended.shape[0]
    return hits / total
