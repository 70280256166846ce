"""Defenses: input transformations (BPDA-ready) and defended classifiers."""

from __future__ import annotations

from bastion.defenses.transforms import BitDepth, DefenseError, MedianSmoothing, Transform

__all__ = ["BitDepth", "DefenseError", "MedianSmoothing", "Transform"]
