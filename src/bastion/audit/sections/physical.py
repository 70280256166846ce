"""The physical-threats section: what an attacker does to an image model without a per-input lp budget
(``BA701``-``BA704``; opt-in with ``--physical`` or ``[physical] enabled = true``).

Four measurements on the audited inputs, each with the baseline that says whether the number is a threat:

- **patch** (:class:`~bastion.attacks.physical.AdversarialPatch`, Brown et al. 2017): one targeted patch per
  configured area, fitted on a seeded half of the audited inputs (the *fit* half) under the
  :class:`~bastion.attacks.physical.PatchThreat`'s random placements, judged on the other half (*held
  out*) at fresh placements from the same distribution and at unseen ones, beside a random patch at the
  very same placements. ``BA701`` when the held-out success exceeds the random patch's by 20 points.
- **universal** (:class:`~bastion.attacks.physical.UniversalGradient`, judged by
  :func:`~bastion.attacks.physical.evaluate_universal`): one perturbation per audited linf epsilon, fitted
  on the fit half, its fooling rate on the held-out half beside random sign noise of the same norm.
  ``BA702`` when it fools 20 points more than the noise.
- **spatial** (:class:`~bastion.attacks.physical.WorstOfK`, Engstrom et al. 2019): worst of ``k`` random
  rotations and translations per input, on every audited input. ``BA703`` when it costs 20 points of
  accuracy.
- **corruptions** (:func:`~bastion.corruptions.corruption_accuracy`, Hendrycks & Dietterich 2019): accuracy
  per corruption and severity 1-5 on every audited input. ``BA704`` when some severity costs 25 points.

Each part runs or says why not (``status`` ``"skipped"`` with a ``note``): not images, too few inputs for
a fit/held-out split, no input gradients, a patch that does not fit the image, no linf threat audited.
The fitted patches are written beside the report as PNG files (:meth:`PhysicalSection.files`) and drawn
in report.html.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping
from typing import Any

import torch

from bastion.audit.config import AuditConfig, ConfigError
from bastion.audit.findings import Finding, finding
from bastion.audit.sections.base import AuditContext, CheckRun, MetricRow, Section, SectionResult, check
from bastion.errors import BastionError
from bastion.threat import Norm, ThreatModel

__all__ = [
    "MARGIN",
    "CORRUPTION_DROP",
    "MIN_HITS",
    "MIN_INPUTS",
    "PhysicalSection",
    "patch_file_name",
    "physical_lines",
]

MIN_INPUTS = 20
"""The fewest audited inputs for the patch and the universal perturbation (half fit, half held out)."""
MARGIN = 0.2
"""``BA701``-``BA703``: how far (a share of the inputs) the attack must beat its baseline to be a finding."""
CORRUPTION_DROP = 0.25
"""``BA704``: the accuracy a corruption severity must cost (a share of the inputs) to be a finding."""
MIN_HITS = 5
"""Fewer successes than this are never a finding, whatever the rates (a handful of inputs is noise)."""
PATCH_STEP_BUDGET = 5.0
"""The patch's signed step is ``PATCH_STEP_BUDGET / steps`` of the bounds' width: each value can cross the
box five times whatever the number of steps (AdversarialPatch's default, 500 x 0.01)."""
DRAWS = 4
"""Placements per held-out input when a patch is judged."""


def _skip(note: str) -> dict[str, Any]:
    return {"status": "skipped", "note": note}


def patch_file_name(area: float) -> str:
    """The PNG a patch of ``area`` is written to beside the report (``physical-patch-10pct.png``)."""
    return f"physical-patch-{format(100 * area, 'g').replace('.', '_')}pct.png"


class PhysicalSection(Section):
    name = "physical"
    requires = ("facts", "blocked")
    template = "physical.html.j2"

    def enabled(self, config: AuditConfig) -> bool:
        return config.physical

    def run(self, ctx: AuditContext) -> SectionResult:
        start = time.perf_counter()
        cfg = ctx.config
        x = ctx.x
        n = int(x.shape[0])
        head: dict[str, Any] = {"n_inputs": n, "seed": cfg.seed, "n_fit": 0, "n_held_out": 0}
        reason = None
        if ctx.output("blocked"):
            reason = "the inputs lie outside the model's bounds (BA106): no attack runs"
        elif not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            reason = (
                f"the inputs are {shape}, not images (N, C, H, W): patches, rotations and image corruptions "
                "have no meaning for them"
            )
        if reason is not None:
            block = {"status": "skipped", "reason": reason, **head, "seconds": time.perf_counter() - start,
                     "patch": None, "universal": None, "spatial": None, "corruptions": None}  # fmt: skip
            return SectionResult(block)
        facts = ctx.output("facts")
        differentiable = bool(facts.differentiable) if facts is not None else True
        fit, held = _split(n, cfg.seed)
        if fit is not None and held is not None:
            head["n_fit"], head["n_held_out"] = int(fit.numel()), int(held.numel())
        findings: list[Finding] = []
        ran: list[CheckRun] = []
        patches: list[dict[str, Any]] = []
        patch = self._patch(ctx, fit, held, differentiable, findings, ran, patches)
        universal = self._universal(ctx, fit, held, differentiable, findings, ran)
        spatial = self._spatial(ctx, findings, ran)
        corruptions = self._corruptions(ctx, findings, ran)
        block = {"status": "measured", "reason": None, **head, "seconds": time.perf_counter() - start,
                 "patch": patch, "universal": universal, "spatial": spatial,
                 "corruptions": corruptions}  # fmt: skip
        return SectionResult(block, tuple(findings), tuple(ran), artifacts={"patches": patches})

    # -- the four parts ----------------------------------------------------------------------------------

    def _patch(
        self,
        ctx: AuditContext,
        fit: torch.Tensor | None,
        held: torch.Tensor | None,
        differentiable: bool,
        findings: list[Finding],
        ran: list[CheckRun],
        patches: list[dict[str, Any]],
    ) -> dict[str, Any]:
        from bastion.attacks.physical import AdversarialPatch, PatchThreat

        cfg = ctx.config
        k = int(ctx.clean_logits.shape[1])
        target = cfg.physical_patch_target
        if target is None:
            classes = sorted(int(c) for c in torch.unique(ctx.y).tolist())
            target = classes[cfg.seed % len(classes)]
        elif target >= k:
            raise ConfigError(f"physical_patch_target {target} is not a class of this {k}-class model")
        step = PATCH_STEP_BUDGET / cfg.physical_patch_steps
        attack = AdversarialPatch(steps=cfg.physical_patch_steps, step_size=min(step, 1.0))
        names = list(getattr(ctx.data, "class_names", ()) or ())
        out: dict[str, Any] = {
            "status": "measured", "note": None, "target": target,
            "target_name": names[target] if target < len(names) else str(target), "attack": attack.name,
            "params": attack.params(), "draws": DRAWS, "areas": [],
        }  # fmt: skip
        if fit is None or held is None:
            return {**out, **_skip(_too_few(int(ctx.x.shape[0])))}
        if not differentiable:
            return {**out, **_skip("the patch is fitted by gradient ascent and the model has no input "
                                   "gradients (BA105)")}  # fmt: skip
        x, y = ctx.x, ctx.y
        hw = (int(x.shape[2]), int(x.shape[3]))
        for area in cfg.physical_patch_areas:
            label = f"patch {100 * area:g}%"
            row: dict[str, Any] = {"area": area, "label": label, "image": None, "train": None, "unseen": None}
            threat = PatchThreat(area=area, bounds=tuple(ctx.model.bounds))
            row["patch_shape"] = list(threat.patch_shape(hw))
            ctx.progress(f"physical: {label}", 0, 1)
            try:
                threat.check_fits(hw)
                result = attack.fit(ctx.model, x[fit], threat, target=target, seed=cfg.seed + 70)
                seen = result.evaluate(ctx.model, x[held], y[held], placements="train", draws=DRAWS,
                                       seed=cfg.seed + 71, batch_size=cfg.batch_size)  # fmt: skip
                unseen = result.evaluate(ctx.model, x[held], y[held], placements="unseen", draws=DRAWS,
                                         seed=cfg.seed + 72, batch_size=cfg.batch_size)  # fmt: skip
            except BastionError as exc:  # the patch cannot fit these images, or no input is eligible
                out["areas"].append({**row, **_skip(str(exc)), "seconds": 0.0})
                ctx.progress(f"physical: {label}", 1, 1)
                continue
            ctx.clock.attack_seconds += result.seconds
            ctx.clock.log.append({"attack": attack.name, "purpose": "physical", "threat": label,
                                  "seconds": result.seconds})  # fmt: skip
            name = patch_file_name(area)
            row.update(status="measured", note=None, image=name, seconds=result.seconds)
            for key, score in (("train", seen), ("unseen", unseen)):
                row[key] = {"success_rate": score.success_rate, "baseline_rate": score.baseline_rate,
                            "counted": score.counted}  # fmt: skip
            out["areas"].append(row)
            patches.append({"label": label, "file": name, "patch": result.patch.detach().cpu(),
                            "example": _example(ctx, result, held, cfg.seed + 73),
                            "bounds": tuple(ctx.model.bounds)})  # fmt: skip
            hits = seen.success_rate * seen.counted * DRAWS
            fired = seen.success_rate - seen.baseline_rate >= MARGIN and hits >= MIN_HITS
            ran.append(check("BA701", label, not fired, success_rate=seen.success_rate,
                             baseline_rate=seen.baseline_rate, target=target))  # fmt: skip
            if fired:
                findings.append(
                    finding(
                        "BA701",
                        f"a {label[6:]} patch fitted on {fit.numel()} inputs sends {seen.success_rate:.0%} "
                        f"of held-out (input, placement) pairs to class {out['target_name']} (a random "
                        f"patch: {seen.baseline_rate:.0%}; at unseen placements {unseen.success_rate:.0%} vs "
                        f"{unseen.baseline_rate:.0%}); the patch is {name} beside this report",
                        threat=label,
                        success_rate=seen.success_rate,
                        baseline_rate=seen.baseline_rate,
                        unseen_success_rate=unseen.success_rate,
                        target=target,
                        area=area,
                    )
                )
            ctx.progress(f"physical: {label}", 1, 1)
        return out

    def _universal(
        self,
        ctx: AuditContext,
        fit: torch.Tensor | None,
        held: torch.Tensor | None,
        differentiable: bool,
        findings: list[Finding],
        ran: list[CheckRun],
    ) -> dict[str, Any]:
        from bastion.attacks.physical import UniversalGradient, evaluate_universal

        attack = UniversalGradient()
        out: dict[str, Any] = {"status": "measured", "note": None, "attack": attack.name,
                               "params": attack.params(), "threats": []}  # fmt: skip
        epsilons = [e for nm, e in ctx.config.threats if nm is Norm.LINF]
        if fit is None or held is None:
            return {**out, **_skip(_too_few(int(ctx.x.shape[0])))}
        if not epsilons:
            return {**out, **_skip("the audit has no linf threat; the universal perturbation is measured at "
                                   "the audit's linf epsilon (--norm linf)")}  # fmt: skip
        if not differentiable:
            return {**out, **_skip("the perturbation is fitted by gradient ascent and the model has no input "
                                   "gradients (BA105)")}  # fmt: skip
        for eps in epsilons:
            label = f"universal linf ε={eps:g}"
            row: dict[str, Any] = {"label": label, "norm": "linf", "epsilon": eps}
            ctx.progress(f"physical: {label}", 0, 1)
            try:
                threat = ThreatModel(Norm.LINF, eps, bounds=tuple(ctx.model.bounds))
                res = evaluate_universal(ctx.model, attack, ctx.x[fit], ctx.x[held], threat,
                                         y_test=ctx.y[held], seed=ctx.config.seed + 74)  # fmt: skip
            except BastionError as exc:  # an epsilon on the wrong scale for these bounds
                out["threats"].append({**row, **_skip(str(exc))})
                ctx.progress(f"physical: {label}", 1, 1)
                continue
            ctx.clock.attack_seconds += res.seconds
            ctx.clock.log.append({"attack": attack.name, "purpose": "physical", "threat": label,
                                  "seconds": res.seconds})  # fmt: skip
            row.update(status="measured", note=None, perturbation_norm=res.norm,
                       fit_fooling_rate=res.fit_fooling_rate, test_fooling_rate=res.test_fooling_rate,
                       noise_fooling_rate=res.noise_fooling_rate, clean_accuracy=res.clean_accuracy,
                       perturbed_accuracy=res.perturbed_accuracy, seconds=res.seconds)  # fmt: skip
            out["threats"].append(row)
            fooled = res.test_fooling_rate * held.numel()
            fired = res.test_fooling_rate - res.noise_fooling_rate >= MARGIN and fooled >= MIN_HITS
            ran.append(check("BA702", label, not fired, fooling_rate=res.test_fooling_rate,
                             noise_fooling_rate=res.noise_fooling_rate))  # fmt: skip
            if fired:
                findings.append(
                    finding(
                        "BA702",
                        f"one perturbation of linf norm {res.norm:.3g}, fitted on {fit.numel()} inputs, "
                        f"changes the label of {res.test_fooling_rate:.0%} of {held.numel()} held-out inputs "
                        f"(random noise of the same norm: {res.noise_fooling_rate:.0%}); held-out accuracy "
                        f"{_pct(res.clean_accuracy)} → {_pct(res.perturbed_accuracy)}",
                        threat=label,
                        fooling_rate=res.test_fooling_rate,
                        noise_fooling_rate=res.noise_fooling_rate,
                        epsilon=eps,
                    )
                )
            ctx.progress(f"physical: {label}", 1, 1)
        return out

    def _spatial(self, ctx: AuditContext, findings: list[Finding], ran: list[CheckRun]) -> dict[str, Any]:
        from bastion.attacks.physical import SpatialThreat, WorstOfK

        cfg = ctx.config
        attack = WorstOfK(k=cfg.physical_spatial_k, batch_size=max(cfg.batch_size, 1))
        label = f"worst of {attack.k}: ±{cfg.physical_rotation:g}°, ±{cfg.physical_translation:g}"
        out: dict[str, Any] = {"status": "measured", "note": None, "label": label, "attack": attack.name,
                               "k": attack.k, "max_rotation": cfg.physical_rotation,
                               "max_translation": cfg.physical_translation}  # fmt: skip
        if cfg.physical_rotation == 0 and cfg.physical_translation == 0:
            return {**out, **_skip("physical_rotation and physical_translation are both 0: no transform")}
        ctx.progress("physical: spatial", 0, 1)
        threat = SpatialThreat(
            cfg.physical_rotation, cfg.physical_translation, bounds=tuple(ctx.model.bounds)
        )
        res = attack(ctx.model, ctx.x, ctx.y, threat, seed=cfg.seed + 75)
        ctx.clock.attack_seconds += res.seconds
        ctx.clock.log.append({"attack": attack.name, "purpose": "physical", "threat": label,
                              "seconds": res.seconds})  # fmt: skip
        n = len(res)
        clean = float(res.correct.float().mean())
        robust = float((res.correct & ~res.success).float().mean())
        fooled = int(res.success.sum())
        out.update(n=n, n_correct=int(res.correct.sum()), n_fooled=fooled, clean_accuracy=clean,
                   spatial_accuracy=robust, success_rate=res.success_rate, queries=res.queries,
                   seconds=res.seconds)  # fmt: skip
        fired = clean - robust >= MARGIN and fooled >= MIN_HITS
        ran.append(check("BA703", "spatial", not fired, clean_accuracy=clean, spatial_accuracy=robust))
        if fired:
            findings.append(
                finding(
                    "BA703",
                    f"the worst of {attack.k} random rotations (±{cfg.physical_rotation:g}°) and shifts "
                    f"(±{cfg.physical_translation:g} of the side) per input takes accuracy from {clean:.0%} "
                    f"to {robust:.0%} ({fooled} of {int(res.correct.sum())} correct inputs fooled)",
                    threat="spatial",
                    clean_accuracy=clean,
                    spatial_accuracy=robust,
                    k=attack.k,
                )
            )
        ctx.progress("physical: spatial", 1, 1)
        return out

    def _corruptions(self, ctx: AuditContext, findings: list[Finding], ran: list[CheckRun]) -> dict[str, Any]:
        from bastion.corruptions import corruption_accuracy, get_corruption

        cfg = ctx.config
        channels = int(ctx.x.shape[1])
        skipped: dict[str, str] = {}
        names: list[str] = []
        for name in cfg.physical_corruptions:
            c = get_corruption(name)
            if channels < c.min_channels:
                skipped[name] = f"needs {c.min_channels} channels, the inputs have {channels}"
            elif name == "jpeg_compression" and channels not in (1, 3):
                skipped[name] = f"needs 1 or 3 channels, the inputs have {channels}"
            else:
                names.append(name)
        out: dict[str, Any] = {"status": "measured", "note": None, "skipped": skipped}
        if not names:
            return {**out, **_skip("no configured corruption applies to these inputs")}
        ctx.progress("physical: corruptions", 0, 1)
        t0 = time.perf_counter()
        rep = corruption_accuracy(ctx.model, ctx.x, ctx.y, names, seed=cfg.seed, batch_size=cfg.batch_size,
                                  bounds=tuple(ctx.model.bounds))  # fmt: skip
        seconds = time.perf_counter() - t0
        rows = [
            {"corruption": r.corruption, "severity": r.severity, "accuracy": r.accuracy} for r in rep.rows
        ]
        out.update(clean_accuracy=rep.clean_accuracy, rows=rows, per_corruption=rep.per_corruption,
                   mean_corruption_accuracy=rep.mean_accuracy, seconds=seconds)  # fmt: skip
        for name in names:
            mine = [r for r in rep.rows if r.corruption == name]
            worst = min(mine, key=lambda r: r.accuracy)
            first = next((r for r in mine if rep.clean_accuracy - r.accuracy >= CORRUPTION_DROP), None)
            lost = round((rep.clean_accuracy - worst.accuracy) * rep.n)
            fired = first is not None and lost >= MIN_HITS
            ran.append(check("BA704", name, not fired, clean_accuracy=rep.clean_accuracy,
                             worst_accuracy=worst.accuracy, worst_severity=worst.severity))  # fmt: skip
            if fired and first is not None:
                findings.append(
                    finding(
                        "BA704",
                        f"{name} takes accuracy from {rep.clean_accuracy:.0%} to {first.accuracy:.0%} at "
                        f"severity {first.severity} (worst {worst.accuracy:.0%} at severity "
                        f"{worst.severity})",
                        threat=name,
                        clean_accuracy=rep.clean_accuracy,
                        accuracy=first.accuracy,
                        severity=first.severity,
                    )
                )
        ctx.progress("physical: corruptions", 1, 1)
        return out

    # -- rendering ----------------------------------------------------------------------------------------

    def figures(self, report: Mapping[str, Any], artifacts: Mapping[str, Any]) -> dict[str, Any]:
        patches = artifacts.get("patches") or []
        return {"patches": _patches_figure(patches) if patches else None}

    def files(self, report: Mapping[str, Any], artifacts: Mapping[str, Any]) -> dict[str, bytes]:
        """One PNG per fitted patch (nearest-neighbour enlarged to at least 64 px a side)."""
        return {p["file"]: patch_png(p["patch"], p["bounds"]) for p in artifacts.get("patches") or []}

    def compare(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[MetricRow]:
        """Accuracy that holds under each physical threat (higher is better), per measured row."""
        a, b = _metrics(old), _metrics(new)
        return [(f"physical: {k}", a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b])]


# -- helpers --------------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _too_few(n: int) -> str:
    return (
        f"{n} audited input(s): a fitted attack needs at least {MIN_INPUTS} (half to fit, half held out); "
        "raise --limit"
    )


def _split(n: int, seed: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A seeded half/half split of ``range(n)`` into (fit, held-out) indices; None, None below MIN_INPUTS."""
    if n < MIN_INPUTS:
        return None, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 76))
    half = n // 2
    return perm[:half].sort().values, perm[half:].sort().values


def _example(ctx: AuditContext, result: Any, held: torch.Tensor, seed: int) -> dict[str, Any] | None:
    """One held-out input not of the target class with the patch at a training placement, for the figure."""
    target = result.target
    idx = [int(i) for i in held.tolist() if int(ctx.y[i]) != target]
    if not idx:
        return None
    i = idx[0]
    x = ctx.x[i : i + 1]
    g = torch.Generator().manual_seed(int(seed))
    placement = result.threat.sample(1, (int(x.shape[2]), int(x.shape[3])), g)
    with torch.no_grad():
        patched = result.threat.apply(x, result.patch.to(x), placement)[0]
        pred = int(ctx.model(patched).argmax(1)[0])
    return {"x": patched[0].detach().cpu(), "label": int(ctx.y[i]), "prediction": pred}


def _image(t: torch.Tensor, bounds: tuple[float, float]) -> Any:
    """(C, H, W) inside ``bounds`` as an (H, W) or (H, W, 3) float array in [0, 1]."""
    low, high = bounds
    arr = ((t.float() - low) / (high - low)).clamp(0, 1).permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr[..., :3]


def patch_png(patch: torch.Tensor, bounds: tuple[float, float]) -> bytes:
    """A patch (C, h, w) inside ``bounds`` as PNG bytes, enlarged (nearest) to at least 64 px a side."""
    import numpy as np

    from bastion.audit.plots import _pyplot

    arr = _image(patch, bounds)
    factor = max(1, math.ceil(64 / min(arr.shape[0], arr.shape[1])))
    big = np.kron(arr, np.ones((factor, factor) + ((1,) if arr.ndim == 3 else ())))
    buf = io.BytesIO()
    _pyplot().imsave(buf, big, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return buf.getvalue()


def _patches_figure(patches: list[dict[str, Any]]) -> str | None:
    """One column per patch: the patch (top) and a held-out input with it pasted on (bottom)."""
    from bastion.audit.plots import _pyplot, _uri

    shown = [p for p in patches if p["patch"].dim() == 3 and p["patch"].shape[0] in (1, 3)]
    if not shown:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(shown), figsize=(1.9 * len(shown) + 0.9, 4.0), squeeze=False)
    for col, p in enumerate(shown):
        panels = [(_image(p["patch"], p["bounds"]), f"{p['label']}: {p['file']}")]
        ex = p["example"]
        if ex is not None:
            panels.append(
                (_image(ex["x"], p["bounds"]), f"label {ex['label']} → predicted {ex['prediction']}")
            )
        for row in range(2):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if row < len(panels):
                img, title = panels[row]
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(title, fontsize=7)
            else:
                ax.axis("off")
    fig.tight_layout()
    uri: str = _uri(fig)
    return uri


def _metrics(report: Mapping[str, Any]) -> dict[str, float]:
    block = report.get("physical") or {}
    out: dict[str, float] = {}
    if block.get("status") != "measured":
        return out
    for row in (block.get("patch") or {}).get("areas", []):
        if row.get("status") == "measured":
            out[f"{row['label']}: held-out inputs not taken over"] = 1 - row["train"]["success_rate"]
    for row in (block.get("universal") or {}).get("threats", []):
        if row.get("status") == "measured" and row.get("perturbed_accuracy") is not None:
            out[f"{row['label']}: held-out accuracy"] = row["perturbed_accuracy"]
    sp = block.get("spatial") or {}
    if sp.get("status") == "measured":
        out[f"spatial accuracy ({sp['label']})"] = sp["spatial_accuracy"]
    co = block.get("corruptions") or {}
    if co.get("status") == "measured":
        out["mean corruption accuracy"] = co["mean_corruption_accuracy"]
    return out


def physical_lines(block: Mapping[str, Any]) -> list[str]:
    """The ``physical`` block as markdown: a heading line, a blank, one bullet per part, a blank."""
    if block.get("status") != "measured":
        return ["**Physical threats**: skipped: " + str(block.get("reason")), ""]
    lines = [
        f"**Physical threats** ({block['n_inputs']} inputs; fitted attacks on {block['n_fit']}, judged on "
        f"{block['n_held_out']} held out):",
        "",
    ]
    patch = block["patch"]
    if patch["status"] != "measured":
        lines.append(f"- patch: skipped: {patch['note']}")
    for row in patch["areas"]:
        if row["status"] != "measured":
            lines.append(f"- {row['label']}: skipped: {row['note']}")
            continue
        tr, un = row["train"], row["unseen"]
        lines.append(
            f"- {row['label']} (target {patch['target_name']}): held-out success "
            f"**{_pct(tr['success_rate'])}** (random patch {_pct(tr['baseline_rate'])}); unseen placements "
            f"{_pct(un['success_rate'])} (random {_pct(un['baseline_rate'])}); patch image `{row['image']}`"
        )
    uni = block["universal"]
    if uni["status"] != "measured":
        lines.append(f"- universal perturbation: skipped: {uni['note']}")
    for row in uni["threats"]:
        if row["status"] != "measured":
            lines.append(f"- {row['label']}: skipped: {row['note']}")
            continue
        lines.append(
            f"- {row['label']}: held-out fooling rate **{_pct(row['test_fooling_rate'])}** (random noise "
            f"of the same norm {_pct(row['noise_fooling_rate'])}); held-out accuracy "
            f"{_pct(row['clean_accuracy'])} → {_pct(row['perturbed_accuracy'])}"
        )
    sp = block["spatial"]
    if sp["status"] != "measured":
        lines.append(f"- spatial: skipped: {sp['note']}")
    else:
        lines.append(
            f"- spatial ({sp['label']}): accuracy {_pct(sp['clean_accuracy'])} → "
            f"**{_pct(sp['spatial_accuracy'])}**"
        )
    co = block["corruptions"]
    if co["status"] != "measured":
        lines.append(f"- corruptions: skipped: {co['note']}")
    else:
        for name, mean in co["per_corruption"].items():
            accs = ", ".join(_pct(r["accuracy"]) for r in co["rows"] if r["corruption"] == name)
            lines.append(
                f"- {name} (severity 1-5): {accs} (mean {_pct(mean)}; clean {_pct(co['clean_accuracy'])})"
            )
        for name, why in co["skipped"].items():
            lines.append(f"- {name}: skipped: {why}")
    return [*lines, ""]
