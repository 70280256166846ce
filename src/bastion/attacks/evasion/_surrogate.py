"""A small differentiable surrogate distilled from a model's labels, for transfer attacks.

The surrogate learns the target's decisions around the attacked inputs (the inputs themselves plus
random points of up to twice the threat's radius), so its gradients point across the target's decision
boundary even when the target's own gradients are masked, zero or undefined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks.evasion.pgd import effective_epsilon, random_start
from bastion.model import Classifier, predict
from bastion.rng import Randomness, torch_generator
from bastion.threat import ThreatModel

__all__ = ["distil_surrogate", "surrogate_for"]


def surrogate_for(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A small CNN for images (C, H, W) with H, W >= 16; an MLP otherwise (tiny images, tabular data)."""
    if len(input_shape) == 3 and min(input_shape[1:]) >= 16:
        c, h, w = input_shape
        flat = 64 * ((h + 1) // 2) * ((w + 1) // 2)
        return nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(flat, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )
    d = 1
    for s in input_shape:
        d *= s
    layers = [nn.Flatten(), nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, num_classes))


def distil_surrogate(
    model: Classifier,
    x: torch.Tensor,
    threat: ThreatModel,
    generator: Randomness,
    *,
    copies: int = 9,
    steps: int = 300,
    batch_size: int = 128,
) -> nn.Module:
    """Train a surrogate on ``model``'s labels for ``x`` (N, ...) and ``copies`` noisy copies of it.

    Costs ``N * (copies + 1)`` label queries and ``steps`` optimiser steps; deterministic for a given
    generator state. The returned module is in eval mode with frozen parameters.
    """
    widest = effective_epsilon(ThreatModel(threat.norm, float("inf"), bounds=threat.bounds), x)
    wide = ThreatModel(threat.norm, min(2 * effective_epsilon(threat, x), widest), bounds=threat.bounds)
    noisy = [random_start(wide, x, wide.epsilon, generator) for _ in range(copies)]
    data = torch.cat([x, *noisy])
    with torch.no_grad():
        logits = predict(model, data, batch_size=1024)
    labels = logits.argmax(dim=1)
    # the surrogate learns from the whole batch, so its training draws are the batch's by nature
    batch_gen = torch_generator(generator, x.device)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=batch_gen, device=batch_gen.device))
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)  # parameter init draws from the global RNG; keep the caller's untouched
        net = surrogate_for(tuple(x.shape[1:]), int(logits.shape[1])).to(device=x.device, dtype=x.dtype)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, foreach=True)
        n = data.shape[0]
        for _ in range(steps):
            batch = torch.randint(0, n, (min(batch_size, n),), generator=batch_gen, device=batch_gen.device)
            batch = batch.to(x.device)
            loss = F.cross_entropy(net(data[batch]), labels[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
