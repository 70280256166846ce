"""What an audit runs: threat models, preset, checks, gates. From keyword arguments or a TOML file.

A TOML file (every key optional)::

    preset = "standard"          # fast | standard | thorough | autoattack
    limit = 500                  # audit the first N samples of the data
    seed = 0
    fail_on = "high"             # low | medium | high: the severity that fails the audit
    min_robust_accuracy = 0.0    # fail when the adaptive robust accuracy is below this
    eot_samples = 1              # Expectation over Transformation for randomised models
    defense = "jpeg:75,bits:4"   # audit the model behind input transformations (naive and BPDA + EOT)
    detector = "feature-squeezing"   # measure a detector (feature-squeezing | msp | energy) ...
    detector_fpr = 0.05              # ... at this clean false-positive rate, and attack it adaptively
    certify = "ibp"              # certified accuracy next to the attacks': ibp (linf) | smoothing:SIGMA (l2)
    certify_n = 10000            # smoothing: noise draws that bound each input's top-class probability
    certify_alpha = 0.001        # smoothing: failure probability of each certificate (--certify-alpha)
    scan_model = "neural-cleanse"    # training-time threats: look for a backdoor in the model (BA401)
    training_data = "npz:train.npz"  # the model's training data (train split), for the two keys below
    scan_data = "ac"                 # scan it: ac | spectral (poison, BA402) | label-noise (BA403);
                                     # several ("ac,spectral" or a list) are compared (BA405)
    scan_layer = "penultimate"       # ac/spectral: the layer whose activations are scanned
    training_manifest = "train.json" # verify it against `bastion data manifest` output (BA404)
    privacy = ["extraction", "membership", "inversion"]   # what a deployed model leaks (BA501-BA503);
                                     # membership needs training_data (its members)
    output_policy = "probs"          # what the deployed API releases: probs | labels | topK | roundD
    privacy_pool = "fashion-mnist"   # extraction's query pool (default: the audited data, worst case)
    privacy_budget = [500, 2000]     # extraction's query budgets
    privacy_references = 2           # membership: RMIA reference models (0: loss threshold only)
    privacy_samples = 500            # membership: at most this many members and as many non-members
    privacy_evaluator = "zoo:NAME"   # inversion: an independent classifier that judges reconstructions
    privacy_evaluator_weights = "evaluator.safetensors"
    privacy_clone_steps = 400        # extraction: optimiser steps per clone
    privacy_inversion_queries = 2000 # inversion: queries per inverted class

    [[threat]]
    norm = "linf"
    epsilon = [0.05, 0.1]        # one number or a list

    [checks]
    enabled = true               # the attack-quality checks (BA2xx)
    curve = true                 # robust accuracy against epsilon, until it reaches about zero
    transfer = true              # transfer attack from a distilled surrogate
    samples = 50                 # inputs used by the costlier checks (unbounded attack, stability)
    noise_draws = 100

    [physical]                   # image models: patch, universal, spatial, corruptions (--physical)
    enabled = true
    patch_areas = [0.02, 0.1]    # shares of the image each patch covers
    patch_steps = 200            # signed-gradient steps per patch
    patch_target = 3             # default: one of the audited labels, chosen by the seed
    spatial_k = 10               # worst-of-k rotations and translations
    rotation = 30                # degrees
    translation = 0.1            # share of the image's side
    corruptions = ["gaussian_noise", "gaussian_blur", "contrast", "brightness"]   # severities 1-5
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bastion.audit.findings import Severity
from bastion.errors import BastionError
from bastion.evaluation import PRESETS
from bastion.threat import Norm

__all__ = [
    "SCAN_DATA_METHODS",
    "PRIVACY_METHODS",
    "SCAN_MODEL_METHODS",
    "TEXT_ATTACK_NAMES",
    "TEXT_PRESETS",
    "AuditConfig",
    "ConfigError",
    "load_config",
    "parse_certify",
]


class ConfigError(BastionError):
    """An audit configuration value or file is invalid."""


SCAN_MODEL_METHODS = ("neural-cleanse",)
SCAN_DATA_METHODS = ("ac", "spectral", "label-noise")
PRIVACY_METHODS = ("extraction", "membership", "inversion")
# The text registry's names (bastion.text.registry), restated: importing the config imports no text attack.
TEXT_ATTACK_NAMES = ("deepwordbug", "invisible", "homoglyph", "pwws", "textfooler")
TEXT_PRESETS = ("paper", "strict")
PHYSICAL_CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast", "brightness")
"""The physical-threats section's default corruptions: cheap ones, one or two per family."""

_CERTIFY_HELP = "use ibp (linf threats) or smoothing:SIGMA (l2 threats), e.g. smoothing:0.25"


def parse_certify(spec: str) -> tuple[str, float | None]:
    """``"ibp"`` → ``("ibp", None)``, ``"smoothing:0.25"`` → ``("smoothing", 0.25)``; else ConfigError."""
    if not isinstance(spec, str):
        raise ConfigError(f"certify must be a string, got {spec!r}; {_CERTIFY_HELP}")
    method, _, arg = spec.strip().lower().partition(":")
    if method == "ibp":
        if arg:
            raise ConfigError(
                f"certify = {spec!r}: ibp takes no parameter, it certifies at every linf epsilon audited"
            )
        return "ibp", None
    if method != "smoothing":
        raise ConfigError(f"unknown certification method {spec!r}; {_CERTIFY_HELP}")
    if not arg:
        raise ConfigError(
            f"certify = {spec!r} needs the noise level the model was trained with, e.g. smoothing:0.25"
        )
    try:
        sigma = float(arg)
    except ValueError:
        sigma = math.nan
    if not (0 < sigma < math.inf):
        raise ConfigError(f"certify = {spec!r}: sigma must be a finite number > 0, e.g. smoothing:0.25")
    return "smoothing", sigma


@dataclass(frozen=True)
class AuditConfig:
    """Frozen audit settings; derive variants with :func:`dataclasses.replace`.

    ``threats`` is a tuple of ``(norm, epsilon)`` pairs, audited in order.
    """

    threats: tuple[tuple[Norm, float], ...] = ((Norm.LINF, 0.1),)
    preset: str = "standard"
    limit: int | None = 500
    seed: int = 0
    fail_on: Severity = Severity.HIGH
    min_robust_accuracy: float = 0.0
    eot_samples: int = 1
    batch_size: int = 500
    checks: bool = True
    curve: bool = True
    transfer: bool = True
    check_samples: int = 50
    noise_draws: int = 100
    examples: int = 8
    defense: str | None = None
    detector: str | None = None
    detector_fpr: float = 0.05
    certify: str | None = None
    certify_n: int = 10_000
    certify_alpha: float = 0.001
    scan_model: str | None = None
    training_data: str | None = None
    scan_data: str | None = None
    scan_layer: str = "penultimate"
    training_manifest: str | None = None
    privacy: tuple[str, ...] = ()
    output_policy: str = "probs"
    privacy_pool: str | None = None
    privacy_budget: tuple[int, ...] = (500, 2000)
    privacy_references: int = 2
    privacy_samples: int = 500
    privacy_evaluator: str | None = None
    privacy_evaluator_weights: str | None = None
    privacy_clone_steps: int = 400
    privacy_inversion_queries: int = 2000
    text_attacks: tuple[str, ...] = TEXT_ATTACK_NAMES
    """Text audits: the attacks run, each at every preset of ``text_presets``."""
    text_presets: tuple[str, ...] = TEXT_PRESETS
    text_max_queries: int | None = None
    """Text audits: the query budget per attacked text (None: unlimited)."""
    physical: bool = False
    """Image audits: the physical-threats section (patch, universal, spatial, corruptions); opt-in."""
    physical_patch_areas: tuple[float, ...] = (0.02, 0.1)
    """Physical: the patch sizes, as shares of the image each patch covers at scale 1."""
    physical_patch_steps: int = 200
    physical_patch_target: int | None = None
    """Physical: the patch's target class (None: one of the audited labels, chosen by the seed)."""
    physical_spatial_k: int = 10
    physical_rotation: float = 30.0
    physical_translation: float = 0.1
    physical_corruptions: tuple[str, ...] = PHYSICAL_CORRUPTIONS
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        threats = []
        for item in self.threats:
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ConfigError(f"each threat must be a (norm, epsilon) pair, got {item!r}")
            norm, eps = Norm.parse(item[0]), item[1]
            if not isinstance(eps, int | float) or isinstance(eps, bool) or not (0 < eps < math.inf):
                raise ConfigError(f"epsilon must be a finite number > 0, got {eps!r} for {norm.value}")
            threats.append((norm, float(eps)))
        if not threats:
            raise ConfigError("an audit needs at least one threat model (--norm/--epsilon or [[threat]])")
        object.__setattr__(self, "threats", tuple(dict.fromkeys(threats)))
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; use one of: {', '.join(PRESETS)}")
        try:
            object.__setattr__(self, "fail_on", Severity.parse(self.fail_on))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError(f"limit must be a positive integer, got {self.limit!r}")
        if not (0.0 <= self.min_robust_accuracy <= 1.0):
            raise ConfigError(f"min_robust_accuracy must be in [0, 1], got {self.min_robust_accuracy!r}")
        for name in ("eot_samples", "batch_size", "check_samples", "noise_draws", "certify_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.defense is not None:
            from bastion.defenses import parse_defense
            from bastion.errors import DefenseError

            try:
                parse_defense(self.defense)
            except DefenseError as exc:
                raise ConfigError(str(exc)) from None
        if self.detector is not None and self.detector not in ("feature-squeezing", "msp", "energy"):
            raise ConfigError(
                f"unknown detector {self.detector!r}; use one of: feature-squeezing, msp, energy"
            )
        if not (0.0 < self.detector_fpr < 1.0):
            raise ConfigError(f"detector_fpr must lie in (0, 1), got {self.detector_fpr!r}")
        if self.certify is not None:
            method, sigma = parse_certify(self.certify)
            object.__setattr__(self, "certify", method if sigma is None else f"{method}:{sigma:.12g}")
        alpha = self.certify_alpha
        if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not (0.0 < alpha < 0.5):
            raise ConfigError(
                f"certify_alpha must lie in (0, 0.5), got {alpha!r} (0.001 is the usual choice)"
            )
        # With every draw on the top class the Clopper-Pearson bound is alpha ** (1 / n); it must pass 1/2.
        smoothing = self.certify is not None and self.certify.startswith("smoothing")
        if smoothing and alpha ** (1 / self.certify_n) <= 0.5:
            fewest = math.floor(math.log2(1 / alpha)) + 1
            raise ConfigError(
                f"certify_n = {self.certify_n} draws can never certify at certify_alpha = "
                f"{alpha:g}; use at least {fewest} (10,000 is the audit's default)"
            )
        if not isinstance(self.examples, int) or self.examples < 0:
            raise ConfigError(f"examples must be an integer >= 0, got {self.examples!r}")
        self._check_privacy()
        self._check_training()
        self._check_text()
        self._check_physical()

    def _check_physical(self) -> None:
        """The physical-threat keys: patch areas in (0, 0.5], positive counts, ranges, known corruptions."""
        if not isinstance(self.physical, bool):
            raise ConfigError(f"physical must be true or false, got {self.physical!r}")
        areas = self.physical_patch_areas
        if isinstance(areas, int | float) and not isinstance(areas, bool):
            areas = (areas,)
        if isinstance(areas, str):
            try:
                areas = tuple(float(a) for a in areas.replace(" ", "").split(",") if a)
            except ValueError:
                areas = (math.nan,)
        if (
            not isinstance(areas, tuple | list)
            or not areas
            or any(isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a <= 0.5 for a in areas)
        ):
            raise ConfigError(
                f"physical_patch_areas must be shares of the image in (0, 0.5], e.g. 0.02,0.1; got {areas!r}"
            )
        object.__setattr__(self, "physical_patch_areas", tuple(sorted({float(a) for a in areas})))
        for name in ("physical_patch_steps", "physical_spatial_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        t = self.physical_patch_target
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 0):
            raise ConfigError(f"physical_patch_target must be a class index >= 0, got {t!r}")
        for name, top in (("physical_rotation", 180.0), ("physical_translation", 1.0)):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            inside = number and (0 <= value <= top if name == "physical_rotation" else 0 <= value < top)
            if not inside:
                bracket = "]" if name == "physical_rotation" else ")"
                raise ConfigError(f"{name} must be a number in [0, {top:g}{bracket}, got {value!r}")
            object.__setattr__(self, name, float(value))
        from bastion.corruptions import CORRUPTIONS

        names = _names(self.physical_corruptions, "physical_corruptions", tuple(CORRUPTIONS))
        object.__setattr__(self, "physical_corruptions", names)

    def _check_text(self) -> None:
        """The text keys: known attacks and presets (at least one of each), a positive query budget."""
        for key, valid in (("text_attacks", TEXT_ATTACK_NAMES), ("text_presets", TEXT_PRESETS)):
            names = _names(getattr(self, key), key, valid)
            if not names:
                raise ConfigError(f"{key} names none; use any of: {', '.join(valid)} (comma-separated)")
            object.__setattr__(self, key, names)
        q = self.text_max_queries
        if q is not None and (not isinstance(q, int) or isinstance(q, bool) or q < 1):
            raise ConfigError(f"text_max_queries must be a positive integer, got {q!r}")

    def _check_privacy(self) -> None:
        """The privacy keys: known methods, budgets, an output policy the wrapper understands, and the
        training data membership inference needs (its members)."""
        methods = _names(self.privacy, "privacy", PRIVACY_METHODS)
        object.__setattr__(self, "privacy", methods)
        budgets = self.privacy_budget
        if isinstance(budgets, str):  # "500,2000"
            try:
                budgets = tuple(int(b) for b in budgets.replace(" ", "").split(",") if b)
            except ValueError:
                raise ConfigError(
                    f"privacy_budget must be whole numbers of queries, e.g. 500,2000; "
                    f"got {self.privacy_budget!r}"
                ) from None
        elif isinstance(budgets, int | float) and not isinstance(budgets, bool):
            budgets = (budgets,)
        if (
            not isinstance(budgets, tuple | list)
            or not budgets
            or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in budgets)
        ):
            raise ConfigError(f"privacy_budget must be positive whole numbers of queries, got {budgets!r}")
        object.__setattr__(self, "privacy_budget", tuple(sorted(set(budgets))))
        from bastion.defenses.output_policy import OutputPolicy
        from bastion.errors import DefenseError

        try:
            policy = OutputPolicy.parse(self.output_policy)
        except DefenseError as exc:
            raise ConfigError(f"output_policy: {exc}") from None
        object.__setattr__(self, "output_policy", str(policy))
        for name in ("privacy_samples", "privacy_clone_steps", "privacy_inversion_queries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        refs = self.privacy_references
        if not isinstance(refs, int) or isinstance(refs, bool) or refs < 0:
            raise ConfigError(f"privacy_references must be an integer >= 0 (0: no RMIA), got {refs!r}")
        for name in ("privacy_pool", "privacy_evaluator", "privacy_evaluator_weights"):
            value = getattr(self, name)
            if isinstance(value, Path):
                value = str(value)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
            object.__setattr__(self, name, value.strip() if value is not None else None)
        if "membership" in methods and self.training_data is None:
            raise ConfigError(
                "privacy membership needs the model's training data (its members): pass --training-data "
                "SPEC (e.g. digits or npz:train.npz; its train split is used)"
            )

    def _check_training(self) -> None:
        """The training-time keys: known methods, and the training data wherever something needs it."""
        for name, valid in (("scan_model", SCAN_MODEL_METHODS), ("scan_data", SCAN_DATA_METHODS)):
            value = getattr(self, name)
            if value is None:
                continue
            if name == "scan_data" and isinstance(value, list | tuple):  # TOML: scan_data = ["ac", ...]
                value = ",".join(str(v) for v in value)
            # scan_data may name several scans ("ac,spectral"); the audit compares them (BA405)
            parts = value.split(",") if name == "scan_data" and isinstance(value, str) else [value]
            methods = [p.strip().lower() if isinstance(p, str) else p for p in parts]
            for method in methods:
                if method not in valid:
                    several = " (several, comma-separated)" if name == "scan_data" else ""
                    raise ConfigError(
                        f"unknown {name} {value!r}; use one of: {', '.join(valid)}{several} "
                        "(or leave it unset)"
                    )
            if len(set(methods)) != len(methods):
                raise ConfigError(f"{name} {value!r} names a method twice; name each scan once")
            object.__setattr__(self, name, ",".join(methods))
        if not isinstance(self.scan_layer, str) or not self.scan_layer.strip():
            raise ConfigError(
                f"scan_layer must name a layer ('penultimate' or a sub-module name), got {self.scan_layer!r}"
            )
        for name, example in (("training_data", "npz:train.npz"), ("training_manifest", "train.json")):
            value = getattr(self, name)
            if isinstance(value, Path):
                value = str(value)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a non-empty string such as {example!r}, got {value!r}")
            object.__setattr__(self, name, value.strip() if value is not None else None)
        if self.training_data is None:
            for name, what in (
                ("scan_data", "the training data to scan"),
                ("training_manifest", "the training data to verify"),
            ):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        f"{name} needs {what}: set training_data (--training-data SPEC, e.g. npz:train.npz "
                        "or digits; its train split is used)"
                    )
        elif self.scan_data is None and self.training_manifest is None and not self.privacy:
            raise ConfigError(
                f"training_data = {self.training_data!r} is set but nothing uses it: add scan_data "
                f"({' | '.join(SCAN_DATA_METHODS)}), training_manifest (a `bastion data manifest` file) "
                "or privacy (membership, inversion)"
            )

    @property
    def scan_data_methods(self) -> tuple[str, ...]:
        """The training-data scans to run, in order (empty when ``scan_data`` is unset)."""
        return tuple(self.scan_data.split(",")) if self.scan_data else ()

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["threats"] = [{"norm": n.value, "epsilon": e} for n, e in self.threats]
        out["privacy"] = list(self.privacy)
        out["privacy_budget"] = list(self.privacy_budget)
        out["text_attacks"] = list(self.text_attacks)
        out["text_presets"] = list(self.text_presets)
        out["physical_patch_areas"] = list(self.physical_patch_areas)
        out["physical_corruptions"] = list(self.physical_corruptions)
        out["fail_on"] = str(self.fail_on)
        return out


_TOP = {
    "preset",
    "limit",
    "seed",
    "fail_on",
    "min_robust_accuracy",
    "eot_samples",
    "batch_size",
    "examples",
    "defense",
    "detector",
    "detector_fpr",
    "certify",
    "certify_n",
    "certify_alpha",
    "scan_model",
    "training_data",
    "scan_data",
    "scan_layer",
    "training_manifest",
    "privacy",
    "output_policy",
    "privacy_pool",
    "privacy_budget",
    "privacy_references",
    "privacy_samples",
    "privacy_evaluator",
    "privacy_evaluator_weights",
    "privacy_clone_steps",
    "privacy_inversion_queries",
    "text_attacks",
    "text_presets",
    "text_max_queries",
}
_PHYSICAL = {
    "enabled": "physical",
    "patch_areas": "physical_patch_areas",
    "patch_steps": "physical_patch_steps",
    "patch_target": "physical_patch_target",
    "spatial_k": "physical_spatial_k",
    "rotation": "physical_rotation",
    "translation": "physical_translation",
    "corruptions": "physical_corruptions",
}
_CHECKS = {
    "enabled": "checks",
    "curve": "curve",
    "transfer": "transfer",
    "samples": "check_samples",
    "noise_draws": "noise_draws",
}


def _names(value: Any, key: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    """``"a,b"``, ``["a", "b"]`` or ``()`` as a tuple of known, distinct, lower-case names."""
    if value is None or value == "":
        return ()
    parts = (
        value.split(",")
        if isinstance(value, str)
        else list(value)
        if isinstance(value, list | tuple)
        else None
    )
    if parts is None or not all(isinstance(p, str) for p in parts):
        raise ConfigError(
            f"{key} must be a comma-separated string or a list, e.g. {','.join(valid)}; got {value!r}"
        )
    names = [p.strip().lower() for p in parts if p.strip()]
    for name in names:
        if name not in valid:
            raise ConfigError(f"unknown {key} {name!r}; use any of: {', '.join(valid)} (comma-separated)")
    if len(set(names)) != len(names):
        raise ConfigError(f"{key} {value!r} names something twice; name each once")
    return tuple(names)


def load_config(path: str | Path, base: AuditConfig | None = None) -> AuditConfig:
    """Read a TOML audit file over ``base`` (defaults when None). Unknown keys are errors, not ignored."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"audit config {p} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"audit config {p} is not valid TOML: {exc}") from None
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TOP:
            changes[key] = value
        elif key == "threat":
            changes["threats"] = tuple(_threats(value, p))
        elif key == "checks" and isinstance(value, dict):
            for ck, cv in value.items():
                if ck not in _CHECKS:
                    raise ConfigError(f"{p}: unknown key checks.{ck}; valid: {', '.join(_CHECKS)}")
                changes[_CHECKS[ck]] = cv
        elif key == "physical" and isinstance(value, dict):
            for pk, pv in value.items():
                if pk not in _PHYSICAL:
                    raise ConfigError(f"{p}: unknown key physical.{pk}; valid: {', '.join(_PHYSICAL)}")
                changes[_PHYSICAL[pk]] = pv
        else:
            valid = ", ".join(sorted(_TOP | {"threat", "checks", "physical"}))
            raise ConfigError(f"{p}: unknown key {key!r}; valid keys: {valid}")
    return replace(base or AuditConfig(), **changes)


def _threats(value: Any, path: Path) -> list[tuple[str, float]]:
    if not isinstance(value, list):
        raise ConfigError(f"{path}: [[threat]] must be an array of tables with norm and epsilon")
    out: list[tuple[str, float]] = []
    for table in value:
        if not isinstance(table, dict) or set(table) - {"norm", "epsilon"} or "epsilon" not in table:
            raise ConfigError(f"{path}: each [[threat]] needs norm and epsilon, got {table!r}")
        eps = table["epsilon"]
        for e in eps if isinstance(eps, list) else [eps]:
            out.append((table.get("norm", "linf"), e))
    return out
