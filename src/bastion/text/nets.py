"""Small word-level text classifiers over padded id tensors (pad id 0), for the text zoo.

Both networks ignore padding exactly: a text's logits do not depend on how many ``<pad>`` ids follow it,
so a batch gives the same logits as its texts one by one (up to float rounding).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.errors import ModelContractError

__all__ = ["NETS", "BagOfEmbeddings", "WordCNN", "build_text_net"]


class WordCNN(nn.Module):
    """Kim (2014), "Convolutional Neural Networks for Sentence Classification" (CNN-rand).

    ids (N, L) int64 -> embedding (N, L, E) -> one 1-D convolution per width (``filters`` maps each,
    ReLU) -> max over time -> dropout -> linear -> logits (N, num_classes).

    As in Kim's code, every text is padded by ``width - 1`` zero vectors on both sides inside the network
    (so the first and last words sit in every position of a window, and texts shorter than a filter still
    get features); only windows that touch one of its ``length`` words (at least one) enter the max, so
    extra ``<pad>`` ids after a text in a batch change nothing.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        *,
        embed_dim: int = 64,
        widths: tuple[int, ...] = (3, 4, 5),
        filters: int = 100,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if vocab_size < 2 or num_classes < 2 or not widths or min(widths) < 1:
            raise ModelContractError("WordCNN needs vocab_size >= 2, num_classes >= 2 and widths >= 1")
        self.widths = tuple(int(w) for w in widths)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, w) for w in self.widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(filters * len(self.widths), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != 0).sum(dim=1).clamp_min(1)  # (N,)
        e = self.embedding(ids).transpose(1, 2)  # (N, E, L)
        pooled = []
        for conv, w in zip(self.convs, self.widths, strict=True):
            h = F.relu(
                conv(F.pad(e, (w - 1, w - 1)))
            )  # (N, filters, L + w - 1); window p covers words p-w+1..p
            positions = torch.arange(h.shape[2], device=ids.device)
            beyond = positions[None, None, :] >= (lengths + w - 1)[:, None, None]  # windows of padding only
            pooled.append(h.masked_fill(beyond, float("-inf")).amax(dim=2))
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


class BagOfEmbeddings(nn.Module):
    """A fastText-style baseline (Joulin et al. 2017, without n-grams): mean of the word embeddings of
    the non-padding ids -> dropout -> linear. ids (N, L) -> logits (N, num_classes)."""

    def __init__(
        self, vocab_size: int, num_classes: int, *, embed_dim: int = 64, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if vocab_size < 2 or num_classes < 2:
            raise ModelContractError("BagOfEmbeddings needs vocab_size >= 2 and num_classes >= 2")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != 0).sum(dim=1, keepdim=True).clamp_min(1)
        mean = self.embedding(ids).sum(dim=1) / lengths  # the pad row is zero (padding_idx)
        return self.fc(self.dropout(mean))


NETS: dict[str, type[nn.Module]] = {"wordcnn": WordCNN, "bag": BagOfEmbeddings}


def build_text_net(arch: str, vocab_size: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """A fresh (randomly initialised, from the global RNG) network by name: ``wordcnn`` or ``bag``."""
    if arch not in NETS:
        raise ModelContractError(f"unknown text network {arch!r}; choose one of: {', '.join(NETS)}")
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])  # JSON cards give lists
    return NETS[arch](vocab_size, num_classes, **kwargs)
