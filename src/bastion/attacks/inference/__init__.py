"""Inference attacks: what a deployed model leaks about its training data (membership, inversion)."""
