"""``run_audit``: pre-checks, the evaluation cascade per threat, the attack-quality checks, the verdict.

Per threat model the white-box stages of the preset run as a cascade (the *naive* robust accuracy);
then every black-box probe (Square, a transfer attack, random noise) attacks, independently, the inputs
the white-box stages left standing. The headline (*adaptive*) robust accuracy counts an input robust only
if no attack of any kind fooled it; a probe that fools what white-box attacks could not is a finding.
When configured, the training-time scans (``BA4xx``, :mod:`bastion.audit.training_threats`) run last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bastion.attacks import get
from bastion.attacks.base import Attack
from bastion.audit import checks
from bastion.audit.config import AuditConfig
from bastion.audit.curve import robustness_curve
from bastion.audit.environment import environment, tensor_sha256
from bastion.audit.findings import Finding, finding
from bastion.audit.prechecks import ModelFacts, check_data, check_model
from bastion.audit.probes import Clock, ProbeResult, run_attack, stronger
from bastion.audit.report import SCHEMA_VERSION, AuditReport, Example, RecoveredTrigger
from bastion.data.dataset import Dataset
from bastion.errors import DataError
from bastion.evaluation import preset_attacks, with_eot
from bastion.model import Classifier, as_classifier, predict
from bastion.threat import Norm, ThreatModel

if TYPE_CHECKING:
    from bastion.provenance import Manifest

__all__ = ["Progress", "run_audit"]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(task, done, total)``; ``total`` is the number of inputs the task attacks."""


def _quiet(task: str, done: int, total: int) -> None:
    return None


def run_audit(
    model: Classifier | nn.Module,
    data: Dataset,
    config: AuditConfig | None = None,
    *,
    progress: Progress | None = None,
    model_name: str | None = None,
) -> AuditReport:
    """Audit ``model`` on ``data`` (the first ``config.limit`` samples). Deterministic for a seed."""
    cfg = config or AuditConfig()
    tick = progress or _quiet
    start = time.perf_counter()
    clock = Clock()
    clf = as_classifier(model, bounds=data.bounds)
    network = clf  # the training-time scans look at the weights, never through a --defense
    train, manifest = _training_inputs(cfg)  # before any attack: a wrong path fails at once
    bpda: tuple[Classifier, int] | None = None
    if cfg.defense:
        clf, bpda = _defended(clf, cfg)
    n = min(len(data), cfg.limit) if cfg.limit else len(data)
    if n == 0:
        raise DataError("the data set is empty; nothing to audit")
    x, y = data.x[:n].detach(), data.y[:n]
    findings = check_data(x, clf.bounds)
    facts: ModelFacts | None = None
    threats: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    ran: list[dict[str, Any]] = []
    examples: list[Example] = []
    audited: list[tuple[ThreatModel, float, torch.Tensor]] = []  # for certification
    certification: dict[str, Any] | None = None
    clean_logits = predict(clf, x, batch_size=cfg.batch_size)
    correct = clean_logits.argmax(1) == y
    blocked = any(f.code == "BA106" for f in findings)
    ran += [_ran(c, "data", c not in {f.code for f in findings}) for c in ("BA106", "BA107")]
    if not blocked:
        tick("pre-checks", 0, 1)
        facts, model_findings = check_model(clf, x[: cfg.check_samples], y[: cfg.check_samples])
        findings += model_findings
        flagged = {f.code for f in model_findings}
        ran += [_ran(c, "model", c not in flagged) for c in ("BA101", "BA102", "BA103", "BA104", "BA105")]
        tick("pre-checks", 1, 1)
        for i, (norm, eps) in enumerate(cfg.threats):
            threat = ThreatModel(norm, eps, bounds=clf.bounds)
            result, found, done = _audit_threat(clf, x, y, correct, threat, cfg, facts, clock, tick, i, bpda)
            threats.append(result)
            findings += found
            ran += done
            if cfg.detector:
                from bastion.audit.detectors import audit_detector  # only audits that measure one

                tick(f"{threat.norm.value} ε={threat.epsilon:g}: detector", 0, 1)
                result["detector"] = audit_detector(
                    clf, x, y, correct, threat, result["_x_adv"], result["_fooled"], cfg, clock, cfg.seed + 60
                )
                tick(f"{threat.norm.value} ε={threat.epsilon:g}: detector", 1, 1)
            audited.append((threat, result["robust_accuracy"], result["_fooled"]))
            if not examples and cfg.examples:
                examples = _examples(clf, x, y, result.pop("_x_adv"), result.pop("_fooled"), cfg.examples)
            result.pop("_x_adv", None)
            result.pop("_fooled", None)
        if cfg.certify:
            from bastion.audit.certification import audit_certification  # only audits that certify

            certification, found, done = audit_certification(clf, x, y, audited, cfg, tick)
            findings += found
            ran += done
        if cfg.curve:
            for norm in dict.fromkeys(nm for nm, _ in cfg.threats):
                eps_max = max(e for nm, e in cfg.threats if nm is norm)
                curve, _ = robustness_curve(
                    clf, x, y, correct, norm, eps_max, cfg, clock, facts.differentiable, tick
                )
                curves.append(curve)
                if cfg.checks:
                    points = [(p["epsilon"], p["robust_accuracy"]) for p in curve["points"]]
                    f = checks.monotone_in_epsilon(points, n, norm.value)
                    ran.append(_ran("BA202", norm.value, f is None, points=len(points)))
                    findings += [f] if f else []
    if cfg.certify and certification is None:
        from bastion.audit.certification import certification_block

        certification = certification_block(cfg, "not run: the audit stopped before any attack (BA106)")
    training: dict[str, Any] | None = None
    triggers: list[RecoveredTrigger] = []
    if cfg.scan_model or cfg.training_data:
        from bastion.audit.training_threats import audit_training_threats  # only audits that scan

        differentiable = facts.differentiable if facts else None
        scans = audit_training_threats(
            network, x, data.class_names, train, manifest, cfg, tick, differentiable=differentiable
        )
        training, triggers = scans.block, scans.triggers
        findings += scans.findings
        ran += scans.checks
    gate = _gate(threats, cfg)
    findings += gate
    ran.append(_ran("BA301", "all", not gate, minimum=cfg.min_robust_accuracy))
    findings.sort(key=lambda f: (-int(f.severity), f.code, f.threat))
    failing = [f for f in findings if f.severity >= cfg.fail_on]
    total = time.perf_counter() - start
    return AuditReport(
        schema_version=SCHEMA_VERSION,
        model={
            "name": model_name or getattr(clf, "name", type(clf).__name__),
            "sha256": _model_sha256(clf),
            "num_classes": int(clean_logits.shape[1]),
            "bounds": list(clf.bounds),
            "input_shape": list(x.shape[1:]),
        },
        data={
            "name": data.name,
            "n_samples": n,
            "n_available": len(data),
            "sha256": tensor_sha256(x, y),
            "class_names": list(data.class_names),
        },
        config=cfg.to_dict(),
        clean=_clean(clean_logits, y, correct, data.class_names),
        prechecks=facts.to_dict() if facts else {},
        threats=threats,
        curves=curves,
        checks=ran,
        findings=[f.to_dict() for f in findings],
        verdict={
            "passed": not failing,
            "fail_on": str(cfg.fail_on),
            "failing_findings": [f.code for f in failing],
            "blocked": blocked,
        },
        timing={
            "seconds": total,
            "attack_seconds": clock.attack_seconds,
            "overhead_fraction": max(0.0, 1 - clock.attack_seconds / total) if total > 0 else 0.0,
            "attacks": clock.log,
        },
        environment=environment(x.device),
        examples=examples,
        certification=certification,
        training_threats=training,
        triggers=triggers,
    )


def _training_inputs(cfg: AuditConfig) -> tuple[Dataset | None, Manifest | None]:
    if not (cfg.training_data or cfg.training_manifest):
        return None, None
    from bastion.audit.training_threats import load_training  # only audits that look at training

    return load_training(cfg)


def _ran(code: str, threat: str, passed: bool, **measured: Any) -> dict[str, Any]:
    return {"code": code, "threat": threat, "passed": passed, "measured": measured}


def _audit_threat(
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    threat: ThreatModel,
    cfg: AuditConfig,
    facts: ModelFacts,
    clock: Clock,
    tick: Progress,
    index: int,
    bpda: tuple[Classifier, int] | None = None,
) -> tuple[dict[str, Any], list[Finding], list[dict[str, Any]]]:
    label = f"{threat.norm.value} ε={threat.epsilon:g}"
    seed = cfg.seed + 100 * index
    stages = preset_attacks(cfg.preset)
    white = [(s, a) for s, a in stages if a.access == "gradient"] if facts.differentiable else []
    black = [(s, a) for s, a in stages if a.access != "gradient" and _fits(a, x)]
    if cfg.eot_samples > 1:
        white = [(s, with_eot(a, cfg.eot_samples)) for s, a in white]
    n = int(x.shape[0])
    robust = correct.clone()
    x_adv = x.clone()
    fooled_by: list[str | None] = [None] * n
    stage_rows: list[dict[str, Any]] = []
    findings: list[Finding] = []
    ran: list[dict[str, Any]] = []

    def attack(
        name: str, atk: Attack, idx: torch.Tensor, s: int, what: str, target: Classifier | None = None
    ) -> ProbeResult:
        tick(f"{label}: {name}", 0, int(idx.numel()))
        res = run_attack(
            name,
            atk,
            target or clf,
            x,
            y,
            idx,
            threat,
            seed=s,
            batch_size=cfg.batch_size,
            clock=clock,
            what=what,
        )
        tick(f"{label}: {name}", int(idx.numel()), int(idx.numel()))
        return res

    def record(res: ProbeResult, kind: str) -> None:
        """Inputs this attack fooled first leave the robust set; the first adversarial is kept."""
        new = res.success & robust[res.index]
        for j in res.index[new].tolist():
            fooled_by[j] = res.name
        x_adv[res.index[new]] = res.x_adv[new]
        robust[res.index[new]] = False
        stage_rows.append({**res.to_dict(), "kind": kind, "robust_accuracy": float(robust.float().mean())})

    for k, (name, atk) in enumerate(white):
        record(attack(name, atk, robust.nonzero().flatten(), seed + k, "white-box cascade"), "white-box")
    naive = float(robust.float().mean())
    survivors = robust.nonzero().flatten()
    probes: list[tuple[str, Attack]] = list(black)
    if cfg.checks or not white:
        if x.dim() == 4 and not any(a.name == "square" for _, a in probes):
            probes.insert(0, ("square", get("square", n_queries=1000)))  # BA205 needs one
        if cfg.transfer:
            probes.append(("transfer", get("transfer")))
        probes.append(("noise", get("noise", draws=cfg.noise_draws)))
    for k, (name, atk) in enumerate(probes):
        res = attack(name, atk, survivors, seed + 50 + k, "black-box probe")
        record(res, "black-box")
        if white and cfg.checks:
            kind = "square" if name == "square" else name
            f = checks.beats_white_box(kind, int(res.success.sum()), int(survivors.numel()), n, threat=label)
            ran.append(_ran(checks._BEATS[kind], label, f is None, fooled=int(res.success.sum())))
            findings += [f] if f else []
    if bpda is not None:
        # The defense's adaptive evaluation: the same white-box attacks, back-propagating through the
        # transforms' surrogates (BPDA) and averaging over their randomness (EOT); success is checked
        # on the exact transforms, so every input it breaks is broken.
        target, eot = bpda
        newly = torch.zeros(n, dtype=torch.bool, device=x.device)
        for k, (name, atk) in enumerate(preset_attacks(cfg.preset)):
            if atk.access != "gradient":
                continue
            idx = survivors[~newly[survivors]]  # like the probes: the naive survivors, independently
            res = attack(
                f"{name} BPDA", with_eot(atk, eot), idx, seed + 70 + k, "adaptive (BPDA + EOT)", target
            )
            newly[res.index[res.success]] = True
            record(res, "adaptive")
        if white:
            f = checks.beats_white_box("bpda", int(newly.sum()), int(survivors.numel()), n, threat=label)
            ran.append(_ran("BA208", label, f is None, fooled=int(newly.sum())))
            findings += [f] if f else []
    if white and cfg.checks:
        attacked = correct.nonzero().flatten()
        fgsm = attack("fgsm", get("fgsm", eot_samples=cfg.eot_samples), attacked, seed + 80, "check BA203")
        beaten = fgsm.success & ~_white_fooled(fooled_by, fgsm.index, {s for s, _ in white})
        record(fgsm, "check")
        f = checks.beats_white_box("fgsm", int(beaten.sum()), int(survivors.numel()), n, threat=label)
        ran.append(_ran("BA203", label, f is None, fooled=int(beaten.sum())))
        findings += [f] if f else []
        subset = survivors[: cfg.check_samples]
        newly = torch.zeros(subset.numel(), dtype=torch.bool, device=x.device)
        for k, (name, atk) in enumerate(white):
            res = attack(f"{name} ×2", stronger(atk), subset[~newly], seed + 90 + k, "check BA204")
            newly[~newly] = res.success
            record(res, "check")
        f = checks.beats_white_box("stronger", int(newly.sum()), int(subset.numel()), n, threat=label)
        ran.append(_ran("BA204", label, f is None, fooled=int(newly.sum()), attacked=int(subset.numel())))
        findings += [f] if f else []
        if index == 0 or threat.norm not in {nm for nm, _ in cfg.threats[:index]}:
            found, row = _unbounded(clf, x, y, correct, threat.norm, cfg, clock, tick)
            ran.append(row)
            findings += [found] if found else []
    adaptive = float(robust.float().mean())
    result = {
        "norm": threat.norm.value,
        "epsilon": threat.epsilon,
        "label": label,
        "naive_robust_accuracy": naive if white else None,
        "robust_accuracy": adaptive,
        "stages": stage_rows,
        "per_class": _per_class(y, correct, robust, clf),
        "fooled_by": {name: fooled_by.count(name) for name in dict.fromkeys(f for f in fooled_by if f)},
        "_x_adv": x_adv,
        "_fooled": correct & ~robust,
    }
    return result, findings, ran


def _defended(clf: Classifier, cfg: AuditConfig) -> tuple[Classifier, tuple[Classifier, int]]:
    """The model behind ``cfg.defense`` as a naive evaluator sees it, and its BPDA view with EOT samples
    (``cfg.eot_samples``, or 20 when a transform is randomised and none were asked for)."""
    from bastion.defenses import DefendedClassifier, parse_defense

    chain = parse_defense(cfg.defense or "")
    eot = cfg.eot_samples if cfg.eot_samples > 1 else (20 if any(t.randomized for t in chain) else 1)
    naive = DefendedClassifier(clf, chain, mode="naive", seed=cfg.seed)
    return naive, (DefendedClassifier(clf, chain, mode="bpda", seed=cfg.seed), eot)


def _white_fooled(fooled_by: list[str | None], index: torch.Tensor, names: set[str]) -> torch.Tensor:
    return torch.tensor(
        [fooled_by[i] in names for i in index.tolist()], dtype=torch.bool, device=index.device
    )


def _unbounded(
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    norm: Norm,
    cfg: AuditConfig,
    clock: Clock,
    tick: Progress,
) -> tuple[Finding | None, dict[str, Any]]:
    """PGD from the clean input (no random start: a random point of the whole box is no attack) with
    the margin loss, which never saturates, and no limit on the perturbation."""
    idx = correct.nonzero().flatten()[: cfg.check_samples]
    threat = ThreatModel(norm, float("inf"), bounds=clf.bounds)
    pgd = get("pgd", steps=100, random_start=False, loss="margin", eot_samples=cfg.eot_samples)
    tick(f"{norm.value} unbounded", 0, int(idx.numel()))
    res = run_attack(
        "pgd",
        pgd,
        clf,
        x,
        y,
        idx,
        threat,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        clock=clock,
        what="check BA201",
    )
    tick(f"{norm.value} unbounded", int(idx.numel()), int(idx.numel()))
    success = int(res.success.sum())
    f = checks.unbounded_reaches_all(success, int(idx.numel()), norm.value)
    return f, _ran("BA201", f"{norm.value} unbounded", f is None, success=success, attacked=int(idx.numel()))


def _fits(attack: Attack, x: torch.Tensor) -> bool:
    return attack.name != "square" or x.dim() == 4  # Square's windows need (C, H, W) images


def _per_class(
    y: torch.Tensor, correct: torch.Tensor, robust: torch.Tensor, clf: Classifier
) -> list[dict[str, Any]]:
    out = []
    for c in torch.unique(y).tolist():
        m = y == c
        out.append(
            {
                "class": int(c),
                "n": int(m.sum()),
                "clean_accuracy": float(correct[m].float().mean()),
                "robust_accuracy": float(robust[m].float().mean()),
            }
        )
    return out


def _clean(
    logits: torch.Tensor, y: torch.Tensor, correct: torch.Tensor, names: tuple[str, ...]
) -> dict[str, Any]:
    per_class = []
    for c in torch.unique(y).tolist():
        m = y == c
        name = names[c] if c < len(names) else str(c)
        per_class.append(
            {"class": int(c), "name": name, "n": int(m.sum()), "accuracy": float(correct[m].float().mean())}
        )
    return {
        "accuracy": float(correct.float().mean()),
        "n_correct": int(correct.sum()),
        "per_class": per_class,
    }


def _gate(threats: list[dict[str, Any]], cfg: AuditConfig) -> list[Finding]:
    out = []
    for t in threats:
        if t["robust_accuracy"] < cfg.min_robust_accuracy:
            out.append(
                finding(
                    "BA301",
                    f"robust accuracy {t['robust_accuracy']:.1%} at {t['label']} is below the required "
                    f"{cfg.min_robust_accuracy:.1%}",
                    threat=t["label"],
                    robust_accuracy=t["robust_accuracy"],
                    minimum=cfg.min_robust_accuracy,
                )
            )
    return out


def _examples(
    clf: Classifier, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, fooled: torch.Tensor, k: int
) -> list[Example]:
    idx = fooled.nonzero().flatten()[:k]
    if idx.numel() == 0:
        return []
    with torch.no_grad():
        p_clean = torch.softmax(clf(x[idx]), dim=1)
        p_adv = torch.softmax(clf(x_adv[idx]), dim=1)
    out = []
    for j, i in enumerate(idx.tolist()):
        adv_label = int(p_adv[j].argmax())
        out.append(
            Example(
                index=i,
                label=int(y[i]),
                clean_confidence=float(p_clean[j, int(y[i])]),
                adversarial_label=adv_label,
                adversarial_confidence=float(p_adv[j, adv_label]),
                x=x[i].detach().cpu(),
                x_adv=x_adv[i].detach().cpu(),
            )
        )
    return out


def _model_sha256(clf: Classifier) -> str | None:
    module = getattr(getattr(clf, "model", clf), "module", None)  # a defended model: the one inside
    if not isinstance(module, nn.Module):
        return None
    state = module.state_dict()
    return tensor_sha256(*(state[k] for k in sorted(state)))
