"""Typed errors. Every message names the problem and what to do about it."""

from __future__ import annotations

__all__ = [
    "AttackError",
    "BastionError",
    "CertificationError",
    "DataError",
    "DefenseError",
    "DetectorError",
    "GatewayError",
    "ModelContractError",
    "QueryBudgetError",
    "RemoteModelError",
    "ThreatModelError",
    "UnsafeArtifactError",
]


class BastionError(Exception):
    """Base class of every error bastion raises on purpose."""


class ThreatModelError(BastionError, ValueError):
    """An invalid threat model, or one an attack cannot serve (unsupported norm, epsilon <= 0 ...)."""


class ModelContractError(BastionError, ValueError):
    """The model does not behave like a classifier bastion can attack (shape, output, bounds)."""


class DataError(BastionError, ValueError):
    """Input data is malformed: wrong shape or dtype, NaN, outside the declared bounds, missing file."""


class UnsafeArtifactError(BastionError):
    """A model artifact would execute code when loaded (a pickle); bastion refuses to load it."""


class AttackError(BastionError, ValueError):
    """An attack was configured or called incorrectly (unknown name, bad hyperparameter)."""


class DefenseError(BastionError, ValueError):
    """A defense was configured or called incorrectly (unknown transform or method, bad hyperparameter)."""


class DetectorError(BastionError, ValueError):
    """A detector was configured or used incorrectly (bad ``fpr``, scored before ``fit`` ...)."""


class CertificationError(BastionError, ValueError):
    """A certifier was configured or called incorrectly, or cannot bound the model (an unsupported layer)."""


class QueryBudgetError(BastionError):
    """A black-box attack asked a victim for more queries than its budget allows."""


class RemoteModelError(BastionError):
    """A remote model (an HTTP endpoint) could not be reached, refused the request or answered malformed."""


class GatewayError(BastionError, ValueError):
    """The serving gateway (``bastion serve``) was misconfigured or its key store, audit log or limiter
    refused an operation (unknown key id, broken hash chain, unreachable backend)."""
