"""A differentiable encoder from the user's feature space to a model's input space.

User space (N, D) float64 (see :mod:`bastion.tabular.data`) -> model space (N, M) float32:
numeric, integer and ordinal features are standardised, ``(x - mean) / std`` with the training
data's statistics; categorical features become one-hot blocks.

The **relaxed representation** that gradient attacks move is model space itself, where each
categorical block may hold any probability vector instead of a one-hot
(:meth:`Encoder.relaxed_encode`); :meth:`Encoder.decode` turns it back into user space (argmax per
block, de-standardised values, not yet rounded).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from bastion.errors import DataError
from bastion.tabular.schema import TabularSchema

__all__ = ["Encoder"]


@dataclass(frozen=True)
class Encoder:
    """Fitted with :meth:`fit`; ``mean``/``std`` (D,) float64 (categorical entries unused: 0 / 1)."""

    schema: TabularSchema
    mean: torch.Tensor
    std: torch.Tensor

    def __post_init__(self) -> None:
        d = len(self.schema)
        if self.mean.shape != (d,) or self.std.shape != (d,):
            raise DataError(f"encoder statistics must have shape ({d},)")
        if not bool((self.std > 0).all()):
            raise DataError("encoder std must be > 0 for every feature")

    @classmethod
    def fit(cls, schema: TabularSchema, x: torch.Tensor) -> Encoder:
        """Statistics from training data ``x`` (N, D) in user space; constant features get std 1."""
        if x.dim() != 2 or x.shape[1] != len(schema) or x.shape[0] == 0:
            raise DataError(f"fit needs x of shape (N, {len(schema)}), got {tuple(x.shape)}")
        x = x.detach().to(torch.float64).cpu()
        mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False)
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        cat = torch.tensor([f.kind == "categorical" for f in schema.features])
        mean = torch.where(cat, torch.zeros_like(mean), mean)
        std = torch.where(cat, torch.ones_like(std), std)
        return cls(schema, mean, std)

    # -- layout --------------------------------------------------------------------------------------
    @property
    def slices(self) -> tuple[slice, ...]:
        """For each feature, its columns in model space (width 1, or the number of categories)."""
        out, at = [], 0
        for f in self.schema.features:
            w = len(f.categories) if f.kind == "categorical" else 1
            out.append(slice(at, at + w))
            at += w
        return tuple(out)

    @property
    def width(self) -> int:
        """M, the number of model-space columns."""
        return self.slices[-1].stop

    @property
    def scalar_columns(self) -> tuple[tuple[int, int], ...]:
        """(feature index, model column) of every non-categorical feature."""
        return tuple(
            (j, s.start)
            for j, (f, s) in enumerate(zip(self.schema.features, self.slices, strict=True))
            if f.kind != "categorical"
        )

    def categorical_blocks(self) -> tuple[tuple[int, slice], ...]:
        """(feature index, model-space slice) of every categorical feature."""
        return tuple(
            (j, s)
            for j, (f, s) in enumerate(zip(self.schema.features, self.slices, strict=True))
            if f.kind == "categorical"
        )

    # -- maps ----------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """User space (N, D) -> model space (N, M) float32; differentiable in the scalar features."""
        return self._encode(x).to(torch.float32)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != len(self.schema):
            raise DataError(f"x must have shape (N, {len(self.schema)}), got {tuple(x.shape)}")
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        parts = []
        for j, f in enumerate(self.schema.features):
            col = x[:, j]
            if f.kind == "categorical":
                idx = col.detach().round().long().clamp(0, len(f.categories) - 1)
                parts.append(torch.nn.functional.one_hot(idx, len(f.categories)).to(x.dtype))
            else:
                parts.append(((col - mean[j]) / std[j]).unsqueeze(1))
        return torch.cat(parts, dim=1)

    def relaxed_encode(
        self, x: torch.Tensor, probs: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """User space (N, D) plus optional per-categorical probability vectors -> relaxed (N, M) float64.

        ``probs[name]`` (N, K) replaces the one-hot block of categorical feature ``name`` (rows should
        lie on the simplex); the result is differentiable in ``x``'s scalar columns and in ``probs``.
        """
        z = self._encode(x.to(torch.float64))
        for name, p in (probs or {}).items():
            j = self.schema.index(name)
            s = self.slices[j]
            if self.schema.features[j].kind != "categorical" or p.shape != (len(z), s.stop - s.start):
                raise DataError(
                    f"probs[{name!r}] must be (N, {s.stop - s.start}) for a categorical feature, "
                    f"got {tuple(p.shape)}"
                )
            z = torch.cat([z[:, : s.start], p.to(z), z[:, s.stop :]], dim=1)
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Model/relaxed space (N, M) -> user space (N, D) float64: argmax per categorical block,
        de-standardised scalars (not rounded: :func:`bastion.tabular.repair` does that)."""
        if z.dim() != 2 or z.shape[1] != self.width:
            raise DataError(f"z must have shape (N, {self.width}), got {tuple(z.shape)}")
        z = z.detach().to(torch.float64)
        mean, std = self.mean.to(z.device), self.std.to(z.device)
        cols = []
        for j, (f, s) in enumerate(zip(self.schema.features, self.slices, strict=True)):
            if f.kind == "categorical":
                cols.append(z[:, s].argmax(dim=1).to(torch.float64))
            else:
                cols.append(z[:, s.start] * std[j] + mean[j])
        return torch.stack(cols, dim=1)
