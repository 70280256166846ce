"""In-line defenses of the served models: input transforms before the model and adversarial-input
detectors on each request's rows, from the library (:mod:`bastion.defenses.transforms`,
:mod:`bastion.detect`).

- ``transforms = ["bits:5", "jpeg:75"]``: applied in order to the validated rows; the model answers
  on the transformed rows. The audit record's input digest stays that of what the client sent.
  ``bit-depth`` is accepted as another name of ``bits``.
- ``input_detectors = ["feature-squeezing:bits:2", "strip"]``: run on the validated rows as sent
  (before any transform), on the served model itself. ``feature-squeezing[:SQUEEZERS]`` takes transform
  specs joined by ``+`` (default: Xu et al.'s squeezers for the image's channels);
  ``strip[:N_OVERLAYS]`` (default 64). Each is calibrated at start-up on the ``reference`` data set's
  *test* split — rows the model did not train on: a model's own training rows look cleaner than live
  traffic (on ``zoo:digits-cnn`` a threshold set at 1% on its training rows flags 3.8% of held-out
  digits) — at ``input_detector_fpr``, the share of clean rows each detector flags.

A flagged row adds ``"input:NAME: ..."`` to the request's flags (audit record, metrics). What follows
is the key's ``on_input_flag``: ``flag`` answers as usual, ``reject`` refuses the request (422) before
the model sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from bastion.errors import BastionError, GatewayError

if TYPE_CHECKING:
    from bastion.defenses.transforms import Transform
    from bastion.detect.base import Detector
    from bastion.serve.config import GatewayConfig
    from bastion.serve.served import Served

__all__ = [
    "INPUT_DETECTORS",
    "MAX_CALIBRATION",
    "InlineDefenses",
    "InputFlag",
    "build_input_detector",
    "inline_defenses",
    "inline_problems",
    "parse_transforms",
]

logger = logging.getLogger("bastion.serve.app")

INPUT_DETECTORS = ("feature-squeezing", "strip")
MAX_CALIBRATION = 2000  # reference rows a detector is calibrated on (a seeded subset): start-up time
_ALIASES = {"bit-depth": "bits", "bitdepth": "bits"}
_SHOWN_ROWS = 10  # row indices named in a flag


def _transform_item(item: str) -> str:
    name, sep, arg = item.strip().partition(":")
    return _ALIASES.get(name.strip().lower(), name.strip()) + sep + arg


def parse_transforms(specs: Sequence[str]) -> list[Transform]:
    """The transforms of ``specs`` (each a ``parse_defense`` spec, e.g. ``"bits:5"`` or
    ``"jpeg:75,bits:4"``), in order; :class:`GatewayError` naming the bad one."""
    from bastion.defenses.transforms import parse_defense

    out: list[Transform] = []
    for spec in specs:
        text = ",".join(_transform_item(item) for item in str(spec).split(","))
        try:
            out.extend(parse_defense(text))
        except BastionError as exc:
            raise GatewayError(f"transforms: {exc}") from None
    return out


def build_input_detector(spec: str, fpr: float) -> Detector:
    """An unfitted detector from ``spec`` (``feature-squeezing[:T1+T2]`` or ``strip[:N]``)."""
    from bastion.detect import STRIP, FeatureSqueezing

    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    try:
        if name == "feature-squeezing":
            squeezers = parse_transforms([arg.replace("+", ",")]) if arg.strip() else None
            return FeatureSqueezing(squeezers, fpr=fpr)
        if name == "strip":
            if not arg.strip():
                return STRIP(fpr=fpr)
            if not arg.strip().isdigit():
                raise GatewayError(f"strip takes a whole number of overlays, e.g. strip:64; got {spec!r}")
            return STRIP(int(arg), fpr=fpr)
    except GatewayError as exc:
        raise GatewayError(f"input_detectors: {str(exc).removeprefix('transforms: ')}") from None
    except BastionError as exc:
        raise GatewayError(f"input_detectors: {spec!r}: {exc}") from None
    raise GatewayError(
        f"input_detectors: unknown detector {name!r}; use {', '.join(INPUT_DETECTORS)} "
        "(e.g. 'feature-squeezing:bits:2', 'strip:64')"
    )


def inline_problems(cfg: GatewayConfig) -> list[str]:
    """The in-line defense problems of ``cfg``, one line each (for :func:`check_config`)."""
    problems = []
    try:
        parse_transforms(cfg.transforms)
    except GatewayError as exc:
        problems.append(str(exc))
    if not 0.0 < cfg.input_detector_fpr < 1.0:
        problems.append(
            f"input_detector_fpr = {cfg.input_detector_fpr}: use a false-positive rate in (0, 1), e.g. 0.01"
        )
    names = [d.strip().partition(":")[0].lower() for d in cfg.input_detectors]
    if len(set(names)) != len(names):
        problems.append(f"input_detectors = {list(cfg.input_detectors)} names one twice; list each once")
    for spec in cfg.input_detectors:
        try:
            build_input_detector(spec, 0.01)
        except GatewayError as exc:
            problems.append(str(exc))
    if cfg.input_detectors and not cfg.reference:
        problems.append(
            "input_detectors need clean rows to calibrate on; set reference (e.g. reference = 'digits' "
            "or --reference npz:clean.npz)"
        )
    return problems


class InputFlag:
    """One detector's verdict on a request: which rows it flagged."""

    __slots__ = ("detector", "rows", "threshold", "total")

    def __init__(self, detector: str, rows: list[int], threshold: float, total: int) -> None:
        self.detector, self.rows, self.threshold, self.total = detector, rows, threshold, total

    @property
    def name(self) -> str:
        return f"input:{self.detector}"

    def message(self) -> str:
        shown = ", ".join(str(r) for r in self.rows[:_SHOWN_ROWS])
        more = ", ..." if len(self.rows) > _SHOWN_ROWS else ""
        return (
            f"{self.name}: {len(self.rows)} of {self.total} rows score over {self.threshold:.4g} "
            f"(rows {shown}{more})"
        )


@dataclass
class InlineDefenses:
    """The transforms every served model's inputs go through, and each served model's fitted detectors."""

    transforms: list[Transform] = field(default_factory=list)
    detectors: dict[str, list[Detector]] = field(default_factory=dict)  # served name -> fitted detectors

    def transform(self, served: Served, x: torch.Tensor) -> torch.Tensor:
        """What the model sees: ``x`` after every transform, inside the model's bounds."""
        for t in self.transforms:
            x = t(x, bounds=served.spec.bounds)
        return x

    def check(self, served: Served, x: torch.Tensor) -> list[InputFlag]:
        """Every detector's flagged rows of ``x`` (the rows as sent); detectors with no flag are left out."""
        flags = []
        for detector in self.detectors.get(served.name, []):
            hit = detector.detect(x)
            if bool(hit.any()):
                rows = hit.nonzero().flatten().tolist()
                flags.append(InputFlag(detector.name, rows, detector.threshold, int(x.shape[0])))
        return flags


def _reference_rows(cfg: GatewayConfig) -> torch.Tensor:
    from bastion.data import load_dataset

    assert cfg.reference is not None
    try:
        reference = load_dataset(cfg.reference, split="test")
    except BastionError as exc:
        raise GatewayError(f"reference {cfg.reference!r}: {exc}") from None
    g = torch.Generator().manual_seed(0)
    return reference.x[torch.randperm(len(reference), generator=g)[:MAX_CALIBRATION]].float()


def inline_defenses(cfg: GatewayConfig, served: Mapping[str, Served]) -> InlineDefenses:
    """The in-line defenses ``cfg`` names for ``served``: transforms checked on a row of each model's
    shape, detectors fitted on the reference rows for every model that takes rows of their shape."""
    defenses = InlineDefenses(parse_transforms(cfg.transforms))
    for s in served.values():
        probe = torch.full((1, *s.spec.row_shape), s.spec.bounds[0], dtype=torch.float32)
        try:
            defenses.transform(s, probe)
        except BastionError as exc:
            raise GatewayError(f"transforms on model {s.name!r}: {exc}") from None
    if not cfg.input_detectors:
        return defenses
    if not cfg.reference:
        raise GatewayError(
            "input_detectors need clean rows to calibrate on; set reference (e.g. --reference digits)"
        )
    x = _reference_rows(cfg)
    row = tuple(x.shape[1:])
    for s in served.values():
        if tuple(s.spec.row_shape) != row:
            logger.warning(
                "input detectors skip model %s: its rows %s are not the reference's %s",
                s.name,
                list(s.spec.row_shape),
                list(row),
            )
            continue
        fitted = []
        for spec in cfg.input_detectors:
            detector = build_input_detector(spec, cfg.input_detector_fpr)
            try:
                fitted.append(detector.fit(s.model, x))
            except BastionError as exc:
                raise GatewayError(f"input detector {spec!r} on model {s.name!r}: {exc}") from None
            logger.info(
                "input detector %s on %s: threshold %.4g at fpr %g on %d reference rows",
                spec,
                s.name,
                detector.threshold,
                cfg.input_detector_fpr,
                len(x),
            )
        defenses.detectors[s.name] = fitted
    if not defenses.detectors:
        shapes = ", ".join(f"{n} {list(s.spec.row_shape)}" for n, s in served.items())
        raise GatewayError(
            f"reference {cfg.reference!r} has rows of shape {list(row)} but the served models take {shapes}; "
            "give a reference data set of the models' inputs"
        )
    return defenses
