"""The statistics the circuit analyses share: overlap of two sets, and the share of random draws
at least as extreme as an observed value (a one-sided permutation p-value)."""

import math
from collections.abc import Iterable

import torch
from torch import Tensor


def iou(a: Iterable | Tensor, b: Iterable | Tensor) -> float:
    """``|a & b| / |a | b|``: of two sets, or of two boolean masks of one shape. NaN when both are
    empty, since two empty circuits neither agree nor disagree."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.shape != b.shape:
            raise ValueError("iou of masks needs two boolean tensors of one shape")
        union = int((a | b).sum())
        return int((a & b).sum()) / union if union else math.nan
    a, b = set(a), set(b)
    union = len(a | b)
    return len(a & b) / union if union else math.nan


def share_as_extreme(random: Tensor, observed: float, *, at_least: bool = True) -> float:
    """The share of the random draws that are at least (``at_least``) or at most as large as
    ``observed``, with a 1e-12 tolerance so that a tie counts. Draws that are NaN are left out;
    NaN when ``observed`` is NaN or no draw is left."""
    random = torch.as_tensor(random, dtype=torch.float64).flatten()
    valid = random[~torch.isnan(random)]
    if math.isnan(observed) or len(valid) == 0:
        return math.nan
    hits = valid >= observed - 1e-12 if at_least else valid <= observed + 1e-12
    return float(hits.double().mean())


__all__ = ["iou", "share_as_extreme"]
