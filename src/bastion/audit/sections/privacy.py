"""The privacy section: what a deployed model leaks through its answers (``BA501``-``BA503``).

Every attack here is black-box: it sees the model only through the configured **output policy** (what the
API releases: ``probs``, ``labels``, ``topK``, ``roundD``; :class:`~bastion.defenses.output_policy.
PolicyClassifier`) and every query is counted.

- ``extraction``: Knockoff Nets (Orekondy et al. 2019) choosing by uncertainty (Pal et al. 2020) at each
  budget of ``privacy_budget``, under the deployment's policy and label-only; clone fidelity (top-1
  agreement with the model) and accuracy on held-out inputs as a curve against the budget; the transfer
  rate of PGD adversarials
  crafted on the clone at the audit's first threat (Papernot et al. 2017). The pool defaults to two thirds of
  the audited inputs (an in-distribution pool: the worst case), the rest is held out.
- ``membership``: members are a seeded sample of the training data, non-members the audited inputs (equal
  numbers, at most ``privacy_samples`` each; audited inputs also found in the training data are dropped).
  The loss threshold (Yeom et al. 2018) always; RMIA (Zarifzadeh et al. 2024, offline) with
  ``privacy_references`` reference models when the model's architecture can be re-initialised and retrained,
  the references trained on training rows that are not targets. AUC, balanced accuracy, TPR at 0.1% / 1% FPR.
- ``inversion`` (image models): MI-Face black-box (Fredrikson et al. 2015, NES gradient estimates) on up to
  10 classes with ``privacy_inversion_queries`` queries each; SSIM to each class's mean image and whether the
  reconstruction is nearest its own class's mean (or, with ``privacy_evaluator``, recognised by that model).
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from bastion.audit.config import AuditConfig
from bastion.audit.findings import Finding, Severity, finding
from bastion.audit.sections.base import AuditContext, CheckRun, MetricRow, Section, SectionResult, check
from bastion.data.dataset import Dataset
from bastion.errors import AttackError, BastionError, DataError, ModelContractError
from bastion.model import Classifier, TorchClassifier

__all__ = ["FIDELITY_ALARM", "PrivacySection", "binomial_tail", "privacy_lines"]

log = logging.getLogger(__name__)

FIDELITY_ALARM = 0.9
"""BA501: a clone that agrees with the model on this share of held-out inputs is a working copy."""
IN_DISTRIBUTION = "in-distribution pool, worst case"
MAX_HELD_OUT = 1000
MAX_POPULATION = 2000
MIN_POPULATION = 500
MAX_INVERTED = 10
REFERENCE_EPOCHS = 10
MIN_IDENTIFIED = 7
"""BA502 at a low FPR needs this many members identified: by chance all top-7 scores are members < 1%."""


class PrivacySection(Section):
    name = "privacy"
    requires = ("blocked",)
    template = "privacy.html.j2"

    def enabled(self, config: AuditConfig) -> bool:
        return bool(config.privacy)

    def prepare(self, config: AuditConfig) -> Any:
        from bastion.data import load_dataset

        out: dict[str, Any] = {"training": None, "pool": None, "evaluator": None}
        if config.training_data and ("membership" in config.privacy or "inversion" in config.privacy):
            out["training"] = load_dataset(config.training_data, split="train")
        if config.privacy_pool and "extraction" in config.privacy:
            out["pool"] = load_dataset(config.privacy_pool, split="train")
        if config.privacy_evaluator and "inversion" in config.privacy:
            from bastion.loading import load_model

            out["evaluator"] = load_model(config.privacy_evaluator, weights=config.privacy_evaluator_weights)
        return out

    def run(self, ctx: AuditContext) -> SectionResult:
        from bastion.defenses.output_policy import PolicyClassifier

        cfg = ctx.config
        prep = ctx.prepared(self.name) or {}
        block: dict[str, Any] = {
            "methods": list(cfg.privacy),
            "output_policy": cfg.output_policy,
            "training_data": cfg.training_data,
            "note": None,
            "extraction": None,
            "membership": None,
            "inversion": None,
        }
        if ctx.output("blocked"):
            block["note"] = "not run: the audit stopped before any attack (BA106)"
            return SectionResult(block)
        deployed = PolicyClassifier(ctx.model, cfg.output_policy)
        findings: list[Finding] = []
        ran: list[CheckRun] = []
        artifacts: dict[str, Any] = {"class_names": list(ctx.data.class_names)}
        parts: list[tuple[str, Callable[[], tuple[dict[str, Any], list[Finding], list[CheckRun]]]]] = [
            ("extraction", lambda: _extraction(ctx, prep.get("pool"), artifacts)),
            ("membership", lambda: _membership(ctx, deployed, prep.get("training"), artifacts)),
            ("inversion", lambda: _inversion(ctx, deployed, prep, artifacts)),
        ]
        for key, part in parts:
            if key not in cfg.privacy:
                continue
            try:
                sub, f, c = part()
            except (AttackError, DataError, ModelContractError) as exc:  # a model or data it cannot apply to
                log.warning("privacy %s refused: %s", key, exc)
                sub, f, c = {**_empty(key, cfg), "refused": str(exc)}, [], []
            block[key] = sub
            findings += f
            ran += c
        return SectionResult(block, tuple(findings), tuple(ran), artifacts=artifacts)

    def figures(self, report: Mapping[str, Any], artifacts: Mapping[str, Any]) -> dict[str, Any]:
        block = report.get("privacy") or {}
        ext = block.get("extraction") or {}
        return {
            "extraction": _curve_figure(ext["runs"]) if ext.get("runs") else None,
            "roc": _roc_figure(artifacts["roc"]) if artifacts.get("roc") else None,
            "inversion": _grid_figure(artifacts) if artifacts.get("reconstructions") is not None else None,
        }

    def compare(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[MetricRow]:
        """Leakage as "1 − leak" (``report compare`` reads higher as better): 1 − clone fidelity at the
        largest budget per output, 1 − AUC and 1 − TPR@1% FPR per membership attack, 1 − the share of
        inverted classes identified."""
        o, n = _leaks(old), _leaks(new)
        return [(k, o.get(k), n.get(k)) for k in dict.fromkeys([*o, *n])]


def _empty(part: str, cfg: AuditConfig) -> dict[str, Any]:
    """A part's block with nothing measured (``refused`` None until a reason is set)."""
    head: dict[str, Any] = {"refused": None, "note": None}
    if part == "extraction":
        return {**head, "pool": None, "pool_kind": None, "pool_size": 0, "held_out": 0, "budgets": [],
                "runs": [], "transfer": None, "seconds": 0.0}  # fmt: skip
    if part == "membership":
        return {**head, "n_members": 0, "n_non_members": 0, "dropped_overlap": 0, "attacks": [],
                "rmia_skipped": None, "references": 0, "seconds": 0.0}  # fmt: skip
    return {**head, "classes": [], "queries": 0, "queries_per_class": cfg.privacy_inversion_queries,
            "confidence": [], "reference": None, "ssim": [], "mean_ssim": None, "mean_ssim_other": None,
            "identified": None, "evaluator": cfg.privacy_evaluator, "evaluator_accuracy": None,
            "chance": None, "p_value": None, "seconds": 0.0}  # fmt: skip


# --- extraction -----------------------------------------------------------------------------------------


def _split_audited(ctx: AuditContext) -> tuple[Dataset, Dataset]:
    """(pool, held-out) from the audited inputs: a seeded third (at most 1,000) held out."""
    n = int(ctx.x.shape[0])
    g = torch.Generator().manual_seed(ctx.seed)
    perm = torch.randperm(n, generator=g).to(ctx.x.device)
    n_test = min(MAX_HELD_OUT, max(1, n // 3))
    return _dataset(ctx, perm[n_test:], "audited data (pool)"), _dataset(ctx, perm[:n_test], "held out")


def _dataset(ctx: AuditContext, index: torch.Tensor, name: str) -> Dataset:
    d = ctx.data
    return Dataset(ctx.x[index], ctx.y[index], d.num_classes, d.bounds, d.class_names, name)


def _extraction(
    ctx: AuditContext, user_pool: Dataset | None, artifacts: dict[str, Any]
) -> tuple[dict[str, Any], list[Finding], list[CheckRun]]:
    from bastion.attacks.extraction import CloneTraining, KnockoffNets, transfer_rate
    from bastion.defenses.output_policy import OutputPolicy, PolicyClassifier
    from bastion.threat import ThreatModel

    cfg, start = ctx.config, time.perf_counter()
    sub = _empty("extraction", cfg)
    shape = tuple(ctx.x.shape[1:])
    if user_pool is None:
        if ctx.x.shape[0] < 3:
            sub["refused"] = "fewer than 3 audited inputs: nothing to split into a pool and held-out data"
            return sub, [], []
        pool, test = _split_audited(ctx)
        sub.update(pool=ctx.data.name, pool_kind=IN_DISTRIBUTION)
    else:
        if tuple(user_pool.x.shape[1:]) != shape:
            sub["refused"] = (
                f"the pool {user_pool.name} holds inputs of shape {tuple(user_pool.x.shape[1:])}, the model "
                f"takes {shape}"
            )
            return sub, [], []
        low, high = ctx.model.bounds
        lo, hi = float(user_pool.x.min()), float(user_pool.x.max())
        if lo < low - 1e-6 or hi > high + 1e-6:
            sub["refused"] = (
                f"the pool {user_pool.name} spans [{lo:g}, {hi:g}], outside the model's bounds "
                f"[{low:g}, {high:g}]; rescale it"
            )
            return sub, [], []
        pool = Dataset(
            user_pool.x.to(ctx.x.device), user_pool.y.to(ctx.x.device), user_pool.num_classes,
            user_pool.bounds, user_pool.class_names, user_pool.name,
        )  # fmt: skip
        test = _dataset(ctx, torch.arange(min(len(ctx.x), MAX_HELD_OUT), device=ctx.x.device), "audited data")
        sub.update(pool=user_pool.name, pool_kind="given pool (--privacy-pool)")
    sub.update(pool_size=len(pool), held_out=len(test))
    budgets = sorted({min(b, len(pool)) for b in cfg.privacy_budget})
    if max(cfg.privacy_budget) > len(pool):
        if len(budgets) == 1 and len(pool) >= 2:  # still a curve: half the pool as well
            budgets.insert(0, len(pool) // 2)
        sub["note"] = (
            f"budgets above the pool's {len(pool):,} inputs were capped to {len(pool):,}; pass "
            "--privacy-pool DATA (e.g. a public data set of the same input shape) for larger budgets"
        )
    sub["budgets"] = budgets
    policy = OutputPolicy.parse(cfg.output_policy)
    outputs = [(str(policy), "labels" if policy.kind == "labels" else "probs")]
    if policy.kind != "labels":
        outputs.append(("labels", "labels"))
    training = CloneTraining(steps=cfg.privacy_clone_steps)
    clone = None
    for released, train_on in outputs:
        attack = KnockoffNets("uncertainty", train_on, budgets=tuple(budgets), training=training)

        def tick(stage: str, done: int, total: int, released: str = released) -> None:
            ctx.progress(f"privacy: extraction ({released}) {stage}", done, total)

        result = attack.run(
            PolicyClassifier(ctx.model, released), pool, budgets[-1], test=test, reference=ctx.model,
            seed=ctx.seed, progress=tick,
        )  # fmt: skip
        clone = clone or result.classifier
        curve = [p._asdict() for p in result.curve]
        reach = next((p for p in curve if (p["fidelity"] or 0.0) >= FIDELITY_ALARM), None)
        sub["runs"].append(
            {
                "output": released,
                "trained_on": train_on,
                "queries": result.queries,
                "curve": curve,
                "fidelity": result.fidelity,
                "accuracy": result.accuracy,
                "reaches_alarm_at": None if reach is None else reach["budget"],
            }
        )
    if clone is not None and cfg.threats:
        norm, eps = cfg.threats[0]
        try:
            tr = transfer_rate(
                clone, ctx.model, test.x, test.y, ThreatModel(norm, eps, ctx.model.bounds), seed=ctx.seed
            )
            sub["transfer"] = {
                "threat": f"{norm.value} ε={eps:g}",
                "rate": tr.rate,
                "n": tr.n,
                "transferred": tr.transferred,
                "clone_fooled": tr.clone_fooled,
                "queries": tr.queries,
                "attack": tr.attack,
            }
        except BastionError as exc:  # a model the transfer cannot query (shapes, devices): say why
            sub["transfer"] = {"threat": f"{norm.value} ε={eps:g}", "refused": str(exc)}
    sub["seconds"] = time.perf_counter() - start
    f = _ba501(sub)
    measured = {r["output"]: r["fidelity"] for r in sub["runs"]}
    return (
        sub,
        [f] if f else [],
        [check("BA501", "extraction", f is None, budget=budgets[-1], fidelity=measured)],
    )


def _ba501(sub: dict[str, Any]) -> Finding | None:
    """BA501 when a clone reaches :data:`FIDELITY_ALARM` within the largest budget."""
    runs = sub["runs"]
    hit = [r for r in runs if r["reaches_alarm_at"] is not None]
    if not hit:
        return None
    deployed, labels = runs[0], next((r for r in runs if r["output"] == "labels"), None)
    where = f" ({sub['pool_kind']})" if sub["pool_kind"] == IN_DISTRIBUTION else f" (pool {sub['pool']})"
    if labels is not None and labels["reaches_alarm_at"] is not None:
        b = labels["reaches_alarm_at"]
        fid = next(p["fidelity"] for p in labels["curve"] if p["budget"] == b)
        detail = (
            f"label-only extraction reaches {fid:.0%} fidelity in {b:,} queries{where}: output masking will "
            "not protect this model; rate-limit and monitor"
        )
        if deployed is not labels and deployed["reaches_alarm_at"] is not None:
            detail += (
                f" (with the deployed {deployed['output']} output: {deployed['reaches_alarm_at']:,} queries)"
            )
    else:
        b = deployed["reaches_alarm_at"]
        fid = next(p["fidelity"] for p in deployed["curve"] if p["budget"] == b)
        detail = (
            f"extraction under the deployed {deployed['output']} output reaches {fid:.0%} fidelity in {b:,} "
            f"queries{where}"
        )
        if labels is not None and labels["fidelity"] is not None:
            detail += (
                f"; label-only reaches {labels['fidelity']:.0%} at {labels['queries']:,} "
                "(releasing labels only would slow it)"
            )
    return finding(
        "BA501",
        detail,
        threat="extraction",
        fidelity=fid,
        queries=b,
        output=deployed["output"],
        pool=sub["pool"],
    )


# --- membership -----------------------------------------------------------------------------------------


def _membership(
    ctx: AuditContext, deployed: Classifier, train: Dataset | None, artifacts: dict[str, Any]
) -> tuple[dict[str, Any], list[Finding], list[CheckRun]]:
    from bastion.attacks.inference.threshold import LossThreshold
    from bastion.provenance.hashing import input_hashes

    cfg, start = ctx.config, time.perf_counter()
    sub = _empty("membership", cfg)
    if train is None:  # the config refuses this; a Python caller may pass another pipeline
        sub["refused"] = "no training data: pass --training-data SPEC (the members)"
        return sub, [], []
    shape = tuple(ctx.x.shape[1:])
    if tuple(train.x.shape[1:]) != shape or train.num_classes != ctx.data.num_classes:
        sub["refused"] = (
            f"the training data {train.name} ({tuple(train.x.shape[1:])}, {train.num_classes} classes) "
            f"does not match the audited data ({shape}, {ctx.data.num_classes} classes)"
        )
        return sub, [], []
    seen = set(input_hashes(train.x))
    fresh = torch.tensor([h not in seen for h in input_hashes(ctx.x)], dtype=torch.bool, device=ctx.x.device)
    non_x, non_y = ctx.x[fresh], ctx.y[fresh]
    sub["dropped_overlap"] = int((~fresh).sum())
    n = min(int(non_x.shape[0]), len(train), cfg.privacy_samples)
    if n < 2:
        sub["refused"] = (
            f"only {int(non_x.shape[0])} audited input(s) are not in the training data: membership inference "
            "needs non-members (audit held-out data, e.g. the test split)"
        )
        return sub, [], []
    g = torch.Generator().manual_seed(ctx.seed)
    order = torch.randperm(len(train), generator=g)
    members = order[:n].to(train.x.device)
    pick = torch.randperm(int(non_x.shape[0]), generator=g)[:n].to(non_x.device)
    x = torch.cat([train.x[members].to(ctx.x.device), non_x[pick]])
    y = torch.cat([train.y[members].to(ctx.x.device), non_y[pick]])
    is_member = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    sub.update(n_members=n, n_non_members=n)
    ctx.progress("privacy: membership (loss threshold)", 0, 2 * n)
    results = [LossThreshold().run(deployed, x, y, is_member, seed=ctx.seed)]
    ctx.progress("privacy: membership (loss threshold)", 2 * n, 2 * n)
    rest = order[n:]
    rmia, why = _rmia(ctx, deployed, train, rest, x, y, is_member)
    if rmia is not None:
        results.append(rmia)
        sub["references"] = cfg.privacy_references
    sub["rmia_skipped"] = why
    for r in results:
        sub["attacks"].append(
            {
                "attack": r.attack,
                "auc": r.auc,
                "balanced_accuracy": r.balanced_accuracy,
                "tpr_at_0.1%_fpr": r.tpr_at_0_1pct_fpr,
                "tpr_at_1%_fpr": r.tpr_at_1pct_fpr,
                "auc_z": _auc_z(r.auc, n, n),
                "queries": r.queries,
                "seconds": r.seconds,
            }
        )
    artifacts["roc"] = [(r.attack, *r.roc()[:2], r.auc) for r in results]
    if n < 1000:
        sub["note"] = (
            f"with {n} non-members the lowest false-positive rate measurable is {1 / n:.2%}: TPR@0.1% FPR "
            "is the TPR at zero false positives"
        )
    sub["seconds"] = time.perf_counter() - start
    f = _ba502(sub)
    best = max(a["auc"] for a in sub["attacks"])
    return sub, [f] if f else [], [check("BA502", "membership", f is None, auc=best, n=n)]


def _auc_z(auc: float, n_pos: int, n_neg: int) -> float:
    """(AUC − 0.5) in standard errors of the Mann-Whitney statistic under no leakage."""
    se = math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))
    return (auc - 0.5) / se


def _ba502(sub: dict[str, Any]) -> Finding | None:
    """BA502 high when some attack's TPR@0.1% FPR is >= 10x the FPR (with at least MIN_IDENTIFIED
    members identified) or its AUC >= 0.6; medium when its AUC is 3 standard errors above 0.5."""
    n = sub["n_members"]
    worst: tuple[Severity, dict[str, Any], str] | None = None
    for a in sub["attacks"]:
        tpr = a["tpr_at_0.1%_fpr"]
        identified = round(tpr * n)
        if tpr >= 10 * 0.001 and identified >= MIN_IDENTIFIED:
            why = (
                f"{a['attack']} identifies {tpr:.1%} of members at 0.1% false positives ({identified} of {n})"
            )
            level = Severity.HIGH
        elif a["auc"] >= 0.6:
            why = f"{a['attack']} reaches AUC {a['auc']:.3f} (0.5 is chance)"
            level = Severity.HIGH
        elif a["auc_z"] >= 3:
            why = f"{a['attack']} reaches AUC {a['auc']:.3f}, {a['auc_z']:.1f} standard errors above chance"
            level = Severity.MEDIUM
        else:
            continue
        if worst is None or level > worst[0]:
            worst = (level, a, why)
    if worst is None:
        return None
    level, a, why = worst
    f = finding(
        "BA502", f"{why}; {n} members, {n} non-members", threat="membership", attack=a["attack"],
        auc=a["auc"], tpr_at_0_1pct_fpr=a["tpr_at_0.1%_fpr"], tpr_at_1pct_fpr=a["tpr_at_1%_fpr"],
    )  # fmt: skip
    return f if level == f.severity else _with_severity(f, level)


def _with_severity(f: Finding, level: Severity) -> Finding:
    from dataclasses import replace

    return replace(f, severity=level)


def _reference_factory(network: Classifier) -> tuple[Callable[[], TorchClassifier] | None, str | None]:
    """A builder of fresh copies of the audited architecture, or why there is none. The references are
    re-initialised by the training loop (``reset_parameters``), so every module holding parameters must
    have one: otherwise a "reference" would start from the audited model's weights."""
    if not isinstance(network, TorchClassifier):
        return None, "the model is not a local PyTorch module (its architecture cannot be retrained)"
    if isinstance(network.module, torch.jit.ScriptModule):
        return None, "a TorchScript model cannot be re-initialised and retrained; audit its FILE.py:factory"
    stuck = [
        name or type(m).__name__
        for name, m in network.module.named_modules()
        if any(True for _ in m.parameters(recurse=False))
        and not callable(getattr(m, "reset_parameters", None))
    ]
    if stuck:
        return None, (
            f"module {stuck[0]!r} holds parameters without reset_parameters(): the references could not "
            "start from a fresh initialisation"
        )
    return (lambda: copy.deepcopy(network)), None


def _rmia(
    ctx: AuditContext,
    deployed: Classifier,
    train: Dataset,
    rest: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    is_member: torch.Tensor,
) -> tuple[Any, str | None]:
    from bastion.attacks.inference.references import train_references
    from bastion.attacks.inference.rmia import RMIA
    from bastion.defenses.training.config import TrainingConfig

    cfg = ctx.config
    if cfg.privacy_references == 0:
        return None, "privacy_references = 0"
    build, why = _reference_factory(ctx.network)
    if build is None:
        return None, why
    if rest.numel() < 2:
        return None, "no training rows are left beside the members to train reference models on"
    # more rows make better references; 4x the targets (500 to 2,000) keeps the default audit quick
    rows = rest[: min(MAX_POPULATION, max(MIN_POPULATION, 4 * int(x.shape[0]) // 2))].to(train.x.device)
    pop = Dataset(
        train.x[rows].to(ctx.x.device), train.y[rows].to(ctx.x.device), train.num_classes, train.bounds,
        train.class_names, "population",
    )  # fmt: skip
    training = TrainingConfig(epochs=REFERENCE_EPOCHS, seed=ctx.seed)
    refs_n = cfg.privacy_references

    def tick(done: int, total: int) -> None:
        ctx.progress("privacy: membership (RMIA references)", done, total)

    tick(0, refs_n)
    with tempfile.TemporaryDirectory() as folder:
        refs = train_references(build, pop, refs_n, folder, seed=ctx.seed, config=training, progress=tick)
        result = RMIA(population_size=min(2500, len(pop))).run(
            deployed, x, y, is_member, references=refs, seed=ctx.seed
        )
    return result, None


# --- inversion ------------------------------------------------------------------------------------------


def binomial_tail(hits: int, n: int, p: float) -> float:
    """P(X >= hits) for X ~ Binomial(n, p): how likely ``hits`` successes of ``n`` are by chance."""
    return min(1.0, float(sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(hits, n + 1))))


def _inversion(
    ctx: AuditContext, deployed: Classifier, prep: Mapping[str, Any], artifacts: dict[str, Any]
) -> tuple[dict[str, Any], list[Finding], list[CheckRun]]:
    from bastion.attacks.inference.inversion_metrics import class_means, evaluator_accuracy, ssim
    from bastion.attacks.inference.mi_face import MIFace

    cfg, start = ctx.config, time.perf_counter()
    sub = _empty("inversion", cfg)
    shape = tuple(int(d) for d in ctx.x.shape[1:])
    if len(shape) != 3:
        sub["refused"] = f"model inversion is measured on image models (C, H, W); this model takes {shape}"
        return sub, [], []
    train: Dataset | None = prep.get("training")
    reference = train if train is not None and tuple(train.x.shape[1:]) == shape else ctx.data
    if reference is ctx.data:
        reference = _dataset(ctx, torch.arange(int(ctx.x.shape[0]), device=ctx.x.device), ctx.data.name)
        sub["note"] = "class means of the audited data (pass --training-data for the training set's)"
    present = torch.unique(reference.y).cpu()
    k = ctx.data.num_classes
    g = torch.Generator().manual_seed(ctx.seed)
    chosen = present[torch.randperm(present.numel(), generator=g)[:MAX_INVERTED]].sort().values
    sub["reference"] = reference.name
    # the paper's recipe (start at 0, raw steps) reaches high confidence on [0, 1] images with patterns
    # no evaluator recognises: normalised steps from the middle of the bounds recover the class
    # (docs/inversion.md)
    attack = MIFace(
        steps=5000,
        patience=100,
        gradient="nes",
        normalize=True,
        step_size=0.02,
        max_queries=cfg.privacy_inversion_queries,
    )
    evals = max(1, min(attack.steps + 1, cfg.privacy_inversion_queries // (attack.samples + 1)))
    task = "privacy: inversion (MI-Face)"
    low, high = reference.bounds
    grey = torch.full(tuple(shape), (low + high) / 2, device=ctx.x.device)
    result = attack.run(
        deployed, chosen, start=grey, seed=ctx.seed,
        progress=lambda d, t: ctx.progress(task, min(d, evals), evals),
    )  # fmt: skip
    ctx.progress(task, evals, evals)  # the budget, not the step limit, usually ends it
    recon = result.reconstructions
    means = class_means(reference, present).to(recon.device)
    sim = torch.stack([ssim(recon, m[None], data_range=high - low).cpu() for m in means], 1)
    own = torch.searchsorted(present, chosen)
    own_ssim = sim[torch.arange(chosen.numel()), own]
    other = sim.clone()
    other[torch.arange(chosen.numel()), own] = float("nan")
    identified = (sim.argmax(1) == own).float()
    sub.update(
        classes=chosen.tolist(),
        queries=result.queries,
        confidence=result.confidence.tolist(),
        ssim=own_ssim.tolist(),
        mean_ssim=float(own_ssim.mean()),
        mean_ssim_other=float(torch.nanmean(other)) if present.numel() > 1 else None,
        identified=float(identified.mean()),
        chance=1.0 / max(1, present.numel()),
    )
    hits, judged_by = int(identified.sum()), "nearest class mean (SSIM)"
    evaluator: Classifier | None = prep.get("evaluator")
    if evaluator is not None:
        acc, recognised = evaluator_accuracy(evaluator, recon.cpu(), chosen)  # loaded on the CPU
        sub["evaluator_accuracy"] = acc
        sub["chance"] = 1.0 / k
        hits, judged_by = int(recognised.sum()), f"the evaluator {cfg.privacy_evaluator}"
    sub["p_value"] = binomial_tail(hits, chosen.numel(), sub["chance"])
    sub["judged_by"] = judged_by
    artifacts.update(
        reconstructions=recon.detach().cpu(), means=means[own].detach().cpu(), classes=chosen.tolist()
    )
    sub["seconds"] = time.perf_counter() - start
    fired = sub["p_value"] < 0.01
    f = None
    if fired:
        f = finding(
            "BA503",
            f"{hits} of {chosen.numel()} reconstructions (MI-Face, {result.queries:,} queries under the "
            f"{cfg.output_policy} output) are recognised as their class by {judged_by}; chance is "
            f"{sub['chance']:.0%} (p = {sub['p_value']:.2g}); mean SSIM to the class mean "
            f"{sub['mean_ssim']:.2f}",
            threat="inversion",
            identified=hits,
            classes=chosen.numel(),
            p_value=sub["p_value"],
            mean_ssim=sub["mean_ssim"],
        )
    return (
        sub,
        [f] if f else [],
        [check("BA503", "inversion", not fired, identified=hits, classes=chosen.numel())],
    )


# --- summary, report compare and figures ----------------------------------------------------------------


def privacy_lines(block: Mapping[str, Any]) -> list[str]:
    """The ``privacy`` block as markdown for summary.md: a heading, a blank, one bullet per part, a blank."""
    policy = block["output_policy"]
    lines = [f"**Privacy** (black-box, under the `{policy}` output policy):", ""]
    ex = block.get("extraction")
    if ex:
        if ex["refused"]:
            lines.append(f"- extraction: refused: {ex['refused']}")
        for run in ex.get("runs", []):
            fid = "n/a" if run["fidelity"] is None else f"{run['fidelity']:.1%}"
            lines.append(
                f"- extraction ({run['output']}): clone fidelity **{fid}** after {run['queries']:,} queries "
                f"({ex['pool_kind']})"
            )
    mi = block.get("membership")
    if mi:
        if mi["refused"]:
            lines.append(f"- membership: refused: {mi['refused']}")
        for a in mi.get("attacks", []):
            lines.append(
                f"- membership ({a['attack']}): AUC **{a['auc']:.3f}**, TPR@0.1% FPR "
                f"{a['tpr_at_0.1%_fpr']:.1%}, TPR@1% FPR {a['tpr_at_1%_fpr']:.1%} ({mi['n_members']} "
                f"members, {mi['n_non_members']} non-members)"
            )
    inv = block.get("inversion")
    if inv:
        if inv["refused"]:
            lines.append(f"- inversion: refused: {inv['refused']}")
        else:
            rate = inv["evaluator_accuracy"] if inv["evaluator_accuracy"] is not None else inv["identified"]
            lines.append(
                f"- inversion (MI-Face): **{rate:.0%}** of {len(inv['classes'])} classes identified by "
                f"{inv.get('judged_by', 'nearest class mean')} (chance {inv['chance']:.0%})"
            )
    return [*lines, ""]


def _leaks(report: Mapping[str, Any]) -> dict[str, float]:
    block = report.get("privacy") or {}
    out: dict[str, float] = {}
    for r in (block.get("extraction") or {}).get("runs", []):
        if r.get("fidelity") is not None:
            out[f"privacy: 1 − clone fidelity ({r['output']}, {r['queries']:,} queries)"] = 1 - r["fidelity"]
    for a in (block.get("membership") or {}).get("attacks", []):
        out[f"privacy: 1 − membership AUC ({a['attack']})"] = 1 - a["auc"]
        out[f"privacy: 1 − TPR@1% FPR ({a['attack']})"] = 1 - a["tpr_at_1%_fpr"]
    inv = block.get("inversion") or {}
    rate = (
        inv.get("evaluator_accuracy") if inv.get("evaluator_accuracy") is not None else inv.get("identified")
    )
    if rate is not None:
        out["privacy: 1 − inverted classes identified"] = 1 - rate
    return out


def _curve_figure(runs: list[dict[str, Any]]) -> str:
    from bastion.audit.plots import _pyplot, _uri

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for r in runs:
        pts = [p for p in r["curve"] if p["fidelity"] is not None]
        b = [p["budget"] for p in pts]
        (line,) = ax.plot(b, [p["fidelity"] for p in pts], "o-", label=f"fidelity ({r['output']})")
        ax.plot(
            b,
            [p["accuracy"] for p in pts],
            "x--",
            color=line.get_color(),
            alpha=0.6,
            label=f"accuracy ({r['output']})",
        )
    ax.axhline(FIDELITY_ALARM, color="red", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("queries")
    ax.set_ylabel("clone on held-out data")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _uri(fig)


def _roc_figure(rocs: list[tuple[str, torch.Tensor, torch.Tensor, float]]) -> str:
    from bastion.audit.plots import _pyplot, _uri

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    floor = 1e-4
    for name, fpr, tpr, auc in rocs:
        ax.plot(fpr.clamp_min(floor).numpy(), tpr.clamp_min(floor).numpy(), label=f"{name} (AUC {auc:.3f})")
    ax.plot([floor, 1], [floor, 1], "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _uri(fig)


def _grid_figure(artifacts: Mapping[str, Any]) -> str | None:
    from bastion.audit.plots import _pyplot, _uri

    recon: torch.Tensor = artifacts["reconstructions"]
    means: torch.Tensor = artifacts["means"]
    names = artifacts.get("class_names") or []
    if recon.dim() != 4 or recon.shape[1] not in (1, 3) or recon.shape[0] == 0:
        return None
    plt = _pyplot()
    cols = recon.shape[0]
    fig, axes = plt.subplots(2, cols, figsize=(1.3 * cols + 0.9, 3.0), squeeze=False)
    for col, k in enumerate(artifacts["classes"]):
        for row, img in enumerate((recon[col], means[col])):
            lo, hi = float(img.min()), float(img.max())
            arr = ((img - lo) / (hi - lo or 1.0)).permute(1, 2, 0).numpy()
            ax = axes[row][col]
            ax.imshow(
                arr[..., 0] if arr.shape[2] == 1 else arr,
                cmap="gray",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][col].set_title(names[k] if k < len(names) else str(k), fontsize=8)
    axes[0][0].set_ylabel("MI-Face", fontsize=9)
    axes[1][0].set_ylabel("class mean", fontsize=9)
    fig.tight_layout()
    return _uri(fig)
