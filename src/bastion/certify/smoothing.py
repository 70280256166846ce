"""Randomized smoothing: an l2 certificate for any classifier, from its predictions under Gaussian noise.

Cohen, Rosenfeld, Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019.
The smoothed classifier g(x) = argmax_c P(f(x + δ) = c), δ ~ N(0, σ²I), is constant within
l2 radius σ·Φ⁻¹(p_A) of x whenever p_A lower-bounds the top class's probability. CERTIFY picks the
class on ``n_select`` draws, bounds p_A with a one-sided Clopper–Pearson interval on ``n_estimate``
fresh draws and abstains when that bound is not above 1/2; the certificate then holds with
probability at least 1 - alpha over the noise.

Only predictions are needed (a black-box certifier). The noisy copies of all inputs are laid out
input-major and cut into full batches of ``batch_size``, so the model always sees full batches and
the counting is one ``index_add`` per batch. By default every input draws its noise from its own
generator, seeded by (seed, example id, stage), so an input's certificate does not depend on which
other inputs share its batch, shard or worker.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

import torch
from scipy import stats

from bastion.attacks.base import check_batch, check_positive
from bastion.certify.statistics import binomial_p_value, clopper_pearson_lower
from bastion.errors import CertificationError
from bastion.model import Classifier, as_classifier
from bastion.results import CertificationResult
from bastion.rng import stream_seed

__all__ = ["ABSTAIN", "RandomizedSmoothing"]

ABSTAIN = -1
"""The label :meth:`RandomizedSmoothing.predict` returns where the smoothed classifier abstains."""

Progress = Callable[[int, int], None]
"""Called with (noisy samples done, total) after every batch."""

Noise = torch.Generator | list[torch.Generator]
"""One generator shared by all inputs, or one per input."""


def _num_classes(model: Classifier, x: torch.Tensor) -> int:
    """The model's class count (from one clean forward pass when it does not say)."""
    declared = getattr(model, "num_classes", None)
    return int(declared) if declared else int(model(x[:1]).shape[1])


class RandomizedSmoothing:
    """Certify and predict with the Gaussian-smoothed version of a classifier.

    - ``sigma``: noise standard deviation, in input units (the base classifier should have been
      trained with it: ``harden(..., method="noise", sigma=...)``).
    - ``n_select`` draws choose the class, ``n_estimate`` draws bound its probability; ``alpha`` is
      the failure probability of each certificate (and the level of PREDICT's test).
    - ``batch_size``: noisy inputs per forward pass.

    Noise is not clipped to the model's bounds: the guarantee is about exactly this distribution.
    """

    def __init__(
        self,
        sigma: float,
        n_select: int = 100,
        n_estimate: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
    ) -> None:
        check_positive("sigma", sigma, error=CertificationError)
        for name, value in (("n_select", n_select), ("n_estimate", n_estimate), ("batch_size", batch_size)):
            check_positive(name, value, integer=True, error=CertificationError)
        if not 0.0 < alpha < 0.5:
            raise CertificationError(f"alpha must lie in (0, 0.5), got {alpha} (0.001 is the usual choice)")
        self.sigma = float(sigma)
        self.n_select = int(n_select)
        self.n_estimate = int(n_estimate)
        self.alpha = float(alpha)
        self.batch_size = int(batch_size)

    def params(self) -> dict[str, float | int]:
        return {
            "sigma": self.sigma,
            "n_select": self.n_select,
            "n_estimate": self.n_estimate,
            "alpha": self.alpha,
            "batch_size": self.batch_size,
        }

    def _noise(self, like: torch.Tensor, owner: torch.Tensor, noise: Noise) -> torch.Tensor:
        """Standard normal noise shaped like ``like``, row ``r`` drawn for input ``owner[r]``."""
        if isinstance(noise, torch.Generator):
            return torch.randn(like.shape, generator=noise, device=like.device, dtype=like.dtype)
        # rows are input-major: one draw per run of equal owners, from that input's own generator
        out = torch.empty_like(like)
        change = torch.ones(owner.numel(), dtype=torch.bool, device=owner.device)
        change[1:] = owner[1:] != owner[:-1]
        starts = [*change.nonzero().flatten().tolist(), owner.numel()]
        for lo, hi in itertools.pairwise(starts):
            gen = noise[int(owner[lo])]
            out[lo:hi] = torch.randn(
                (hi - lo, *like.shape[1:]), generator=gen, device=like.device, dtype=like.dtype
            )
        return out

    def _per_example(
        self, x: torch.Tensor, seed: int, ids: torch.Tensor, stage: int
    ) -> list[torch.Generator]:
        return [
            torch.Generator(device=x.device).manual_seed(stream_seed(seed, int(i), stage))
            for i in ids.tolist()
        ]

    @torch.no_grad()
    def counts(
        self,
        model: Classifier,
        x: torch.Tensor,
        n: int,
        generator: Noise,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """(N, K) int64: how often the base classifier predicts each class on ``n`` noisy copies of each
        input. Rows of the noisy batch are input-major (input i's copies are rows i·n … i·n + n - 1).
        ``generator``: one shared generator, or one per input (input i's noise from the i-th)."""
        if not isinstance(generator, torch.Generator) and len(generator) != x.shape[0]:
            raise CertificationError(f"{len(generator)} generators for {x.shape[0]} inputs")
        num, total = x.shape[0], x.shape[0] * n
        width = _num_classes(model, x)
        counts = torch.zeros(num * width, dtype=torch.long, device=x.device)
        for start in range(0, total, self.batch_size):
            rows = torch.arange(start, min(start + self.batch_size, total), device=x.device)
            owner = rows // n
            clean = x[owner]
            # In place: drawing the noise is the only work besides the model (~5% for a small MNIST net).
            noisy = self._noise(clean, owner, generator).mul_(self.sigma).add_(clean)
            labels = model(noisy).argmax(1)
            counts.index_add_(0, owner * width + labels, torch.ones_like(labels))
            if progress is not None:
                progress(int(rows[-1]) + 1, total)
        return counts.view(num, width)

    def _prepare(
        self,
        model: Classifier,
        x: torch.Tensor,
        generator: torch.Generator | None,
        seed: int,
        example_ids: torch.Tensor | Sequence[int] | None,
    ) -> tuple[Classifier, Callable[[int], Noise]]:
        """The classifier, and the noise source of each stage (0: select, 1: estimate): the caller's shared
        generator, or per-input generators seeded by (seed, id, stage)."""
        clf = as_classifier(model)
        check_batch(clf, x, doing="certifying")
        if generator is not None:
            shared = generator
            return clf, lambda stage: shared
        ids = torch.arange(x.shape[0]) if example_ids is None else torch.as_tensor(example_ids).flatten()
        if ids.numel() != x.shape[0] or ids.unique().numel() != ids.numel():
            raise CertificationError(f"example_ids must hold {x.shape[0]} distinct ids, one per input")
        return clf, lambda stage: self._per_example(x, int(seed), ids, stage)

    def certify(
        self,
        model: Classifier,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        seed: int = 0,
        example_ids: torch.Tensor | Sequence[int] | None = None,
        progress: Progress | None = None,
    ) -> CertificationResult:
        """Cohen et al.'s CERTIFY for every input of ``x`` (N, ...): prediction, l2 radius, abstention.

        Same seed, same result; input ``i`` draws its noise as example ``example_ids[i]`` (default ``i``),
        so certifying a slice with its ids gives that slice of the whole run. A ``generator`` instead
        shares one stream across the batch. ``progress`` sees the noisy samples drawn so far.
        """
        clf, noise = self._prepare(model, x, generator, seed, example_ids)
        start = time.perf_counter()
        total = x.shape[0] * (self.n_select + self.n_estimate)
        done = 0

        def step(k: int, _: int) -> None:
            if progress is not None:
                progress(done + k, total)

        choice = self.counts(clf, x, self.n_select, noise(0), step).argmax(1)
        done = x.shape[0] * self.n_select
        hits = self.counts(clf, x, self.n_estimate, noise(1), step).gather(1, choice[:, None])[:, 0]
        p_lower = clopper_pearson_lower(hits, self.n_estimate, self.alpha).to(x.device)
        abstained = p_lower <= 0.5
        radius = torch.where(
            abstained,
            torch.zeros_like(p_lower),
            self.sigma * torch.from_numpy(stats.norm.ppf(p_lower.cpu().numpy())).to(x.device),
        )
        return CertificationResult(
            prediction=torch.where(abstained, torch.full_like(choice, ABSTAIN), choice),
            radius=radius.to(torch.float64),
            abstained=abstained,
            norm="l2",
            method="smoothing",
            seconds=time.perf_counter() - start,
            params=self.params(),
        )

    def predict(
        self,
        model: Classifier,
        x: torch.Tensor,
        *,
        n: int | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        example_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Cohen et al.'s PREDICT: (N,) labels of the smoothed classifier, :data:`ABSTAIN` (-1) where the
        two-sided binomial test of the top two counts over ``n`` draws (default ``n_select``) is not
        significant at ``alpha``. A returned label differs from the smoothed classifier's with probability
        at most alpha."""
        if n is not None:
            check_positive("n", n, integer=True, error=CertificationError)
        clf, noise = self._prepare(model, x, generator, seed, example_ids)
        counts = self.counts(clf, x, int(n or self.n_select), noise(2))
        top2 = counts.topk(min(2, counts.shape[1]), dim=1)
        runner_up = top2.values[:, 1] if counts.shape[1] > 1 else torch.zeros_like(top2.values[:, 0])
        significant = binomial_p_value(top2.values[:, 0], runner_up).to(x.device) <= self.alpha
        return torch.where(significant, top2.indices[:, 0], torch.full_like(top2.indices[:, 0], ABSTAIN))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"RandomizedSmoothing({body})"
