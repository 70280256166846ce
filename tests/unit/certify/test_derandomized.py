"""Derandomized smoothing against patches: the masks and encoding against their definitions, the counting
bound checked exhaustively against a worst-case adversary that rewrites every band a patch touches (bands
read off the masks, not the formula), and a trained network whose certificates no real patch attack
breaks (certified <= empirical on every input)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bastion.certify.derandomized import Ablation, DerandomizedSmoothing, SoftVote, encode, train_ablated
from bastion.errors import CertificationError


@pytest.mark.parametrize(
    ("kind", "size", "h", "w"), [("column", 3, 6, 7), ("block", 2, 5, 6), ("column", 1, 4, 4)]
)
def test_every_pixel_is_kept_by_the_same_number_of_bands(kind, size, h, w) -> None:
    ab = Ablation(kind, size)
    total = ab.positions(h, w)
    keep = ab.keep(h, w, torch.arange(total))
    per_band = keep.flatten(1).sum(1)
    assert torch.all(per_band == (size * h if kind == "column" else size * size))
    coverage = keep.sum(0)[0]
    assert torch.all(coverage == (size if kind == "column" else size * size))


def test_encoding_tells_ablated_pixels_from_any_real_one() -> None:
    x = torch.tensor([[[[-1.0, 0.0, 1.0]]]])  # bounds (-1, 1): u = 0, 0.5, 1
    keep = torch.tensor([[[[1.0, 0.0, 1.0]]]])
    out = encode(x, keep, (-1.0, 1.0))
    assert out.shape == (1, 2, 1, 3)
    assert out[0, :, 0, 0].tolist() == [0.0, 1.0] and out[0, :, 0, 2].tolist() == [1.0, 0.0]
    assert out[0, :, 0, 1].tolist() == [0.0, 0.0]  # ablated: (0, 0); a kept pixel's channels sum to 1


def _touched(ab: Ablation, h: int, w: int, m: int, top: int, left: int) -> torch.Tensor:
    """Bands whose kept pixels meet an m x m square at (top, left) (columns: rows are irrelevant)."""
    total = ab.positions(h, w)
    keep = ab.keep(h, w, torch.arange(total))[:, 0].bool()
    square = torch.zeros(h, w, dtype=torch.bool)
    square[top : top + m, left : left + m] = True
    return (keep & square).flatten(1).any(1)


@pytest.mark.parametrize(("kind", "size", "h", "w", "k"), [("column", 2, 6, 9, 3), ("block", 2, 6, 6, 4)])
def test_the_counting_bound_survives_the_worst_adversary(kind, size, h, w, k) -> None:
    ab = Ablation(kind, size)
    ds = DerandomizedSmoothing(kind, size)
    total = ab.positions(h, w)
    g = torch.Generator().manual_seed(0)
    checked = 0
    for trial in range(150):
        # a vote table: mostly class (trial % k), the rest scattered
        votes = torch.where(
            torch.rand(total, generator=g) < 0.6 + 0.4 * torch.rand(1, generator=g),
            torch.full((total,), trial % k),
            torch.randint(0, k, (total,), generator=g),
        )
        counts = torch.bincount(votes, minlength=k)[None]
        pred, size_cert = ds.certified_size(counts, h, w)
        m = int(size_cert[0])
        for mm in range(1, m + 1):
            # the formula's Δ is the most bands any placement touches
            most = max(
                int(_touched(ab, h, w, mm, t, s).sum()) for t in range(h - mm + 1) for s in range(w - mm + 1)
            )
            assert most <= ab.bands_hit(mm, h, w)
        if m == 0:
            continue
        for top in range(h - m + 1):
            for left in range(w - m + 1):
                hit = _touched(ab, h, w, m, top, left)
                for other in range(k):  # every touched band now votes for `other`
                    attacked = votes.clone()
                    attacked[hit] = other
                    new = torch.bincount(attacked, minlength=k).argmax()
                    assert int(new) == int(pred[0]), (trial, m, top, left, other)
        checked += 1
    assert checked > 20  # the check saw many certified tables


def test_wrong_parameters_are_refused() -> None:
    with pytest.raises(CertificationError, match="column' or 'block"):
        Ablation("row", 2)  # type: ignore[arg-type]
    with pytest.raises(CertificationError, match="size"):
        Ablation("column", 0)
    with pytest.raises(CertificationError, match="does not fit"):
        DerandomizedSmoothing("column", 9).certify(nn.Identity(), torch.zeros(1, 1, 4, 4))


def _digits(n_train: int = 1200) -> tuple[torch.Tensor, ...]:
    from bastion.data import load_dataset

    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test").take(60, seed=0)
    return train.x[:n_train], train.y[:n_train], test.x, test.y


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    )  # fmt: skip


def test_certified_inputs_survive_a_real_patch_attack_everywhere() -> None:
    x_tr, y_tr, x, y = _digits()
    ab = Ablation("column", 2)
    base = train_ablated(_net(), x_tr, y_tr, ab, epochs=12, batch_size=64, lr=3e-3, seed=0)
    ds = DerandomizedSmoothing("column", 2)
    cert = ds.certify(base, x)
    assert cert.certified_accuracy(y) > 0.3  # the defense works at all on digits
    m = 1
    certified = cert.certified(y, m)
    assert int(certified.sum()) >= 5
    soft = SoftVote(base, ab, (0.0, 1.0))
    # the attack: at every m x m location, PGD on the patch pixels against the soft vote from a random start
    broken = torch.zeros(x.shape[0], dtype=torch.bool)
    g = torch.Generator().manual_seed(1)
    for top in range(8 - m + 1):
        for left in range(8 - m + 1):
            mask = torch.zeros(1, 1, 8, 8)
            mask[..., top : top + m, left : left + m] = 1
            patch = torch.rand(x.shape, generator=g).requires_grad_(True)
            for _ in range(5):
                adv = x * (1 - mask) + patch * mask
                loss = nn.functional.nll_loss(soft(adv), y)
                (grad,) = torch.autograd.grad(loss, patch)
                patch = (patch + 0.3 * grad.sign()).clamp(0, 1).detach().requires_grad_(True)
            adv = (x * (1 - mask) + patch * mask).detach()
            pred = ds.certify(base, adv).prediction
            broken |= pred != y
    # certified <= empirical: no certified input is broken, and the attack breaks some uncertified ones
    assert not bool((broken & certified).any())
    robust = float((~broken & (cert.prediction == y)).float().mean())
    assert cert.certified_accuracy(y, m) <= robust
    assert bool(broken.any())


def test_a_softvote_model_is_certified_through_its_base_and_bounds() -> None:
    from bastion.model import TorchClassifier

    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(2 * 36, 3))
    soft = SoftVote(base, Ablation("column", 2), (-1.0, 1.0))
    x = torch.rand(5, 1, 6, 6) * 2 - 1
    cert = DerandomizedSmoothing("column", 2)
    want = cert.certify(base, x, bounds=(-1.0, 1.0))
    for model in (soft, TorchClassifier(soft, bounds=(-1.0, 1.0))):
        got = cert.certify(model, x)  # bounds come from the SoftVote, not the (0, 1) default
        assert torch.equal(got.prediction, want.prediction) and torch.equal(got.radius, want.radius)
    other = cert.certify(base, x)  # the default bounds (0, 1) give other votes: taking the model's is tested
    assert not (torch.equal(other.prediction, want.prediction) and torch.equal(other.radius, want.radius))
    with pytest.raises(CertificationError, match="ablates"):
        DerandomizedSmoothing("column", 3).certify(soft, x)
    with pytest.raises(CertificationError, match="normalises"):
        cert.certify(TorchClassifier(soft, bounds=(-1.0, 1.0), mean=0.1, std=0.5), x)
