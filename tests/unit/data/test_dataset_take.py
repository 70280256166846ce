"""Dataset.take: a seeded subset, and the indices it keeps for arrays held beside the dataset."""

from __future__ import annotations

import pytest
import torch

from bastion.data.dataset import Dataset
from bastion.errors import DataError


def test_take_keeps_the_indices_take_indices_names():
    data = Dataset(torch.arange(20.0).view(20, 1) / 20, torch.arange(20) % 3, 3)
    index = data.take_indices(7, seed=4)
    assert index is not None and index.tolist() == sorted(set(index.tolist())) and len(index) == 7
    assert torch.equal(data.take(7, seed=4).x, data.x[index])
    assert not torch.equal(index, data.take_indices(7, seed=5))  # the seed picks the subset
    assert data.take_indices(None) is None and data.take_indices(20) is None and data.take(20) is data
    with pytest.raises(DataError, match="limit must be >= 1"):
        data.take_indices(0)
