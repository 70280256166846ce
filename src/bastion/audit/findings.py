"""Audit findings: a code, a severity, what it means and what to do. ``docs/checks.md`` documents each.

Every code also names the MITRE ATLAS techniques and OWASP ML Security Top 10 (2023) items it gives
evidence about (``atlas``, ``owasp``; names in :mod:`bastion.audit.taxonomy`): this catalogue is the one
place that mapping lives, and report.json, the HTML report, SARIF and docs/checks.md read it from here.

Codes are stable (reports are compared across versions): ``BA1xx`` are model and data pre-checks,
``BA2xx`` attack-quality checks (is the evaluation itself trustworthy?), ``BA3xx`` gates, ``BA4xx``
training-time threats (a backdoor in the model, poison or noisy labels in the training data, training
data that no longer matches its manifest; only when configured), ``BA5xx`` privacy: what the deployed
model's answers leak (its function, who was in its training set, what its classes look like; only with
``--privacy``), ``BA6xx`` text and tabular models: character tricks that a sanitiser undoes, a
degenerate tabular model, and an adversarial that breaks its own threat model (a bug); ``BA7xx`` physical
threats on image models (a patch, a universal perturbation, rotations and shifts, common corruptions; only
with ``--physical``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = ["CATALOG", "Check", "Finding", "Severity", "finding"]


class Severity(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {value!r}; use low, medium or high") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Check:
    code: str
    title: str
    severity: Severity
    meaning: str
    action: str
    holds: str = ""
    """What a passing check confirms, for the report's list of checks run."""
    atlas: tuple[str, ...] = ()
    """MITRE ATLAS technique IDs (``AML.T0015``) this finding is evidence about."""
    owasp: tuple[str, ...] = ()
    """OWASP Machine Learning Security Top 10 (2023) IDs (``ML01``)."""


# The evidence most checks give: how far an attacker evades the model with crafted inputs, and whether the
# evaluation that says so can be trusted (ATLAS: Evade AI Model by Craft Adversarial Data; OWASP ML01).
_EVASION = ("AML.T0015", "AML.T0043")
_WHITE_BOX = ("AML.T0015", "AML.T0043.000")
_ML01 = ("ML01",)

_CHECKS = [
    Check(
        "BA101",
        "model returns probabilities, not logits",
        Severity.MEDIUM,
        "The outputs are non-negative and sum to one. Losses computed on probabilities saturate, so "
        "gradient attacks underestimate the attacker.",
        "Return logits from the model (drop the final softmax); the audit's black-box and transfer "
        "attacks do not depend on it.",
        holds="the model returns logits",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA102",
        "forward pass is randomised",
        Severity.MEDIUM,
        "Two forward passes on the same input give different outputs (dropout, noise, random "
        "transforms). A single-sample gradient chases one noise draw.",
        "Evaluate with Expectation over Transformation: --eot 20 (averages gradients over 20 draws).",
        holds="the forward pass is deterministic",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA103",
        "input gradients are zero",
        Severity.HIGH,
        "The loss gradient at clean inputs is exactly zero for many samples: a non-differentiable step "
        "(rounding, thresholding) or saturated outputs hide the gradient (gradient masking).",
        "Do not trust white-box numbers; read the adaptive (black-box/transfer) robust accuracy and "
        "attack through the masking layer with BPDA.",
        holds="input gradients are non-zero",
        atlas=("AML.T0015", "AML.T0043.000", "AML.T0043.001"),
        owasp=_ML01,
    ),
    Check(
        "BA104",
        "input gradients are NaN or infinite",
        Severity.HIGH,
        "The loss gradient at clean inputs has NaN or infinite entries; gradient attacks step nowhere.",
        "Find the unstable operation (log of zero, division, sqrt at zero) and stabilise it.",
        holds="input gradients are finite",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA105",
        "model is not differentiable",
        Severity.HIGH,
        "The output carries no gradient graph to the input (.detach(), numpy or integer ops inside), "
        "so no white-box attack can run; the audit falls back to black-box and transfer attacks.",
        "Give the non-differentiable part a differentiable surrogate for the backward pass (BPDA) "
        "and audit again.",
        holds="the model is differentiable",
        atlas=("AML.T0015", "AML.T0043.001", "AML.T0043.002"),
        owasp=_ML01,
    ),
    Check(
        "BA106",
        "inputs outside the declared bounds",
        Severity.HIGH,
        "Some inputs lie outside the model's bounds, so attacks would clip them and the threat model "
        "does not describe the data.",
        "Scale the data into the bounds (e.g. divide images by 255) or declare the right bounds.",
        holds="inputs lie inside the declared bounds",
        atlas=_EVASION,
        owasp=_ML01,
    ),
    Check(
        "BA107",
        "normalisation applied outside the model",
        Severity.MEDIUM,
        "The inputs look standardised (per-channel mean near 0, standard deviation near 1): epsilon "
        "is then measured in normalised units, not in the units of the raw input.",
        "Feed raw inputs and put mean/std inside the model: TorchClassifier(module, mean=..., std=...).",
        holds="inputs are not standardised outside the model",
        atlas=_EVASION,
        owasp=_ML01,
    ),
    Check(
        "BA108",
        "clean accuracy is at chance",
        Severity.HIGH,
        "On clean inputs the model does no better than always answering the most frequent class: the "
        "wrong weights, a model trained on other data, labels in another order, or inputs scaled unlike "
        "its training data. Robust accuracy cannot exceed clean accuracy, so every other number in the "
        "report describes a model that does not work.",
        "Check --weights, that the model was trained on this data (same classes in the same order) and "
        "that the inputs are scaled as in training; then audit again.",
        holds="clean accuracy is above chance",
        atlas=("AML.T0010.003", "AML.T0015"),
        owasp=("ML06", "ML01"),
    ),
    Check(
        "BA109",
        "model weights were not loaded",
        Severity.HIGH,
        "The model was built by its factory without --weights and two builds give different parameters: "
        "they are the factory's random initialisation, not a trained model. Auditing it measures "
        "nothing about the model you ship.",
        "Pass the trained weights: --weights model.safetensors (or make the factory load them).",
        holds="the model's weights were loaded",
        atlas=("AML.T0010.003", "AML.T0015"),
        owasp=("ML06", "ML01"),
    ),
    Check(
        "BA110",
        "input bounds inferred from the data, not declared",
        Severity.HIGH,
        "Nobody declared the range the inputs live in, so the loader took the data's observed minimum and "
        "maximum as the bounds (float data outside [0, 1]). Epsilon is measured in those units: on data "
        "spanning [0, 255], epsilon 0.03 is about a hundredth of one grey level, the attacks change "
        "nothing and the model looks robust.",
        "Declare the bounds (--bounds LOW,HIGH) and give epsilon in the same units, or scale the data into "
        "[0, 1] (divide 8-bit images by 255) and audit again.",
        holds="the input bounds were declared",
        atlas=_EVASION,
        owasp=_ML01,
    ),
    Check(
        "BA201",
        "unbounded attack does not reach 100%",
        Severity.HIGH,
        "With no limit on the perturbation an attack must always succeed; here it did not, so the "
        "attacks cannot find adversarials the model certainly has (gradient masking or a broken loss).",
        "Suspect gradient masking: rely on the adaptive number, attack with BPDA/EOT or a transfer "
        "surrogate.",
        holds="an unbounded attack fools every input",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA202",
        "attack success does not grow with epsilon",
        Severity.MEDIUM,
        "Robust accuracy rose when epsilon grew. A larger ball contains the smaller one, so a sound "
        "attack can only do better: the optimiser is failing at some radii.",
        "Evaluate with more steps and restarts (--preset thorough) and check for gradient masking.",
        holds="attack success grows with epsilon",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA203",
        "single-step attack beats iterative attacks",
        Severity.HIGH,
        "FGSM found adversarials where the iterative white-box attacks found none. Iterative attacks "
        "include FGSM's step, so they fail only when gradients mislead them locally.",
        "Likely gradient masking: read the adaptive number and attack with BPDA/EOT.",
        holds="iterative attacks beat a single step",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA204",
        "more steps or restarts change the result",
        Severity.MEDIUM,
        "Doubling the white-box attacks' steps lowered robust accuracy noticeably: the evaluation "
        "has not converged and the reported number is too optimistic.",
        "Use --preset thorough, or raise steps and restarts until the number stops moving.",
        holds="twice the steps change nothing material",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA205",
        "black-box attack beats white-box attacks",
        Severity.HIGH,
        "Square, which sees only output scores, fooled inputs on which every gradient attack failed. "
        "With sound gradients white-box attacks are strictly stronger: gradients are masked.",
        "Likely gradient masking: the adaptive robust accuracy is the one to believe; evaluate with "
        "BPDA/EOT.",
        holds="Square (black-box) does not beat white-box",
        atlas=("AML.T0015", "AML.T0043.000", "AML.T0043.001"),
        owasp=_ML01,
    ),
    Check(
        "BA206",
        "transfer attack beats white-box attacks",
        Severity.HIGH,
        "Adversarials crafted on a surrogate model transferred to inputs on which every gradient "
        "attack on the model itself failed: the model's own gradients mislead the attacks.",
        "Likely gradient masking: the adaptive robust accuracy is the one to believe; evaluate with "
        "BPDA (the surrogate's gradient) and EOT.",
        holds="a transfer attack does not beat white-box",
        atlas=("AML.T0015", "AML.T0043.000", "AML.T0043.002"),
        owasp=_ML01,
    ),
    Check(
        "BA207",
        "random noise beats white-box attacks",
        Severity.HIGH,
        "Random perturbations of the allowed size fooled inputs on which every gradient attack failed; "
        "a working attack is never worse than noise.",
        "Gradient attacks are broken on this model: find the masking layer and use BPDA/EOT.",
        holds="random noise does not beat white-box",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA208",
        "the defense only holds against naive attacks",
        Severity.HIGH,
        "Attacks through the input transformation as written failed on inputs that the same attacks with "
        "BPDA (a differentiable surrogate on the backward pass) and EOT fooled: the transformation hides "
        "gradients instead of adding robustness (Athalye et al. 2018).",
        "Report the adaptive number (the audit's headline already is); do not rely on this transformation "
        "for robustness. Adversarial training (bastion harden) is the defense that holds.",
        holds="the defense holds against BPDA + EOT as well as naive attacks",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA209",
        "an attack broke a certified input",
        Severity.HIGH,
        "Interval bound propagation proved that no perturbation inside the threat ball changes the "
        "prediction on these inputs, yet an audit attack changed it. A sound certificate and a sound "
        "attack cannot disagree: the certifier, the attack's success check or the model's determinism "
        "is broken.",
        "Trust neither number until this is explained: check that the forward pass is deterministic "
        "(BA102) and report the inputs (report.json) as a bug.",
        holds="no attack broke an input IBP certified",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA211",
        "the network computes something IBP did not bound",
        Severity.HIGH,
        "Before certifying, IBP evaluates the network at the centre and at seeded points of every box; "
        "its real outputs fell outside the bounds IBP computed. The forward pass is not the plain "
        "composition of its layers (a hook, a patched function, a layer that computes something its "
        "type does not say), so the network the attacks ran on is not the one the layers describe: no "
        "certificate is issued, and any code that reads the layers to judge the model is misled too.",
        "Find what changes the forward pass (hooks, patched torch functions, custom layers) and remove it "
        "or make it a real layer; for a low-precision network raise IntervalBoundPropagation's tolerance.",
        holds="the network's outputs lie inside IBP's bounds at the box centres and sampled points",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA210",
        "cross-entropy gradients vanish",
        Severity.MEDIUM,
        "The cross-entropy stages fooled almost none of the inputs that the scale-invariant white-box "
        "stages (DLR, targeted, minimum-norm) broke. The logits are so large (a saturated softmax, or a "
        "temperature folded into the last layer) that the cross-entropy loss is flat at confidently "
        "classified inputs. The headline here is right, but every cross-entropy attack (most tools' PGD "
        "and FGSM) and adversarial training with a cross-entropy inner attack are fooled by it.",
        "Rescale the logits or remove the temperature before comparing with other tools; train with a "
        "margin or DLR inner loss (bastion harden refuses cross-entropy when its gradients vanish).",
        holds="cross-entropy attacks break what the scale-invariant attacks break",
        atlas=_WHITE_BOX,
        owasp=_ML01,
    ),
    Check(
        "BA301",
        "robust accuracy below the required minimum",
        Severity.HIGH,
        "The adaptive robust accuracy at some threat is below --min-robust-accuracy.",
        "Harden the model (adversarial training) or relax the requirement if it was set too high.",
        holds="robust accuracy meets the required minimum",
        atlas=_EVASION,
        owasp=_ML01,
    ),
    Check(
        "BA401",
        "backdoor suspected",
        Severity.HIGH,
        "Neural Cleanse (Wang et al. 2019) reverse-engineered, for every class, the smallest trigger that "
        "sends clean inputs to it; the flagged class needs a far smaller one than the others (an outlier "
        "by the MAD test). A backdoor is such a shortcut: a small patch that the model learned to map to "
        "its target whatever the input.",
        "Inspect the recovered trigger (the report's figure, or bastion scan-model MODEL DATA --image "
        "triggers.png), scan the training data for the poisoned samples (bastion scan-data), and "
        "retrain on verified data. Do not deploy the model meanwhile.",
        holds="no class has an outlying small trigger (Neural Cleanse)",
        atlas=("AML.T0018.000", "AML.T0020", "AML.T0043.004"),
        owasp=("ML10", "ML02"),
    ),
    Check(
        "BA402",
        "training data holds a suspicious subpopulation",
        Severity.HIGH,
        "Within some class, the model's internal representation of the training samples splits into two "
        "groups that lie far apart (activation clustering, Chen et al. 2018; spectral signatures, Tran "
        "et al. 2018). Poisoned samples (a backdoor's triggered inputs) look like this; so does a genuine, "
        "separate style of the class.",
        "Look at the flagged samples (bastion scan-data MODEL DATA --method ac --json scan.json lists "
        "them, --clean-out clean.npz writes the data without them); if they are poison, retrain on the "
        "cleaned data and find how they entered the pipeline (verify the data against a manifest).",
        holds="no class of the training data splits into far-apart groups",
        atlas=("AML.T0020", "AML.T0043.004"),
        owasp=("ML02",),
    ),
    Check(
        "BA403",
        "training labels look noisy",
        Severity.MEDIUM,
        "Models cross-validated on the training data confidently reject the given labels of at least "
        "the tolerated share (5%) of some class (confident learning, Northcutt et al. 2021): labels were "
        "flipped, by mistake or by an attacker.",
        "Review the flagged samples' labels (bastion scan-data MODEL DATA --method label-noise --json "
        "scan.json lists them), fix or drop them and retrain.",
        holds="no class has more confidently rejected labels than tolerated",
        atlas=("AML.T0020", "AML.T0059"),
        owasp=("ML02",),
    ),
    Check(
        "BA404",
        "training data does not match its manifest",
        Severity.HIGH,
        "The training data differs from the sha256 manifest recorded when it was trusted: samples were "
        "changed, added or removed, or a source file changed. Tampering with training data is how "
        "poisoning gets in.",
        "Find out who changed what (bastion data verify DATA MANIFEST names every sample); restore the "
        "data from a trusted copy, or rebuild the manifest if the change was intended, and retrain.",
        holds="the training data matches its manifest",
        atlas=("AML.T0010.002", "AML.T0020", "AML.T0059"),
        owasp=("ML02", "ML06"),
    ),
    Check(
        "BA405",
        "training-data scanners disagree",
        Severity.MEDIUM,
        "Two scans of the same training data through the same model disagree about a class: one sees a "
        "separated group of samples that the other, having scanned the class, does not (or both see one "
        "but flag different samples). Either one method is blind to this poison (its layer, its "
        "direction) or the other reacts to a genuine clean subpopulation: no single scanner's silence "
        "can be trusted here.",
        "Inspect the samples the reporting scan flags (report.json lists the first ones; bastion scan-data "
        "... --clean-out writes the set without them); scan another layer (--scan-layer) and, if the group "
        "is poison, retrain without it.",
        holds="the configured training-data scanners agree on every class",
        atlas=("AML.T0020", "AML.T0043.004"),
        owasp=("ML02",),
    ),
    Check(
        "BA501",
        "the model can be extracted through its API",
        Severity.HIGH,
        "A clone trained only on the model's answers to a few thousand queries (Knockoff Nets, Orekondy et "
        "al. 2019) agrees with it on at least 90% of held-out inputs: anyone with query access can rebuild "
        "a working copy, use it without paying, and craft adversarials on it that transfer to the model "
        "(extraction is the first step of a black-box evasion attack). When label-only extraction gets "
        "there too, hiding the confidence scores does not help.",
        "Rate-limit queries per client and monitor for extraction patterns (many queries, unusual or "
        "out-of-distribution inputs); release labels rather than probabilities where that slows the clone; "
        "if the model is a trade secret, do not expose it to untrusted clients at this query volume.",
        holds="no clone reaches 90% fidelity within the largest query budget",
        atlas=("AML.T0024.002", "AML.T0048.004"),
        owasp=("ML05",),
    ),
    Check(
        "BA502",
        "the model leaks who was in its training set",
        Severity.HIGH,
        "A membership-inference attack tells training members from non-members better than chance: the "
        "model behaves measurably differently on the examples it was trained on (lower loss, higher "
        "confidence). High: it identifies members with confidence (TPR at 0.1% false positives at least "
        "10x the FPR) or its AUC reaches 0.6; medium: the leak is small but above noise. For a model "
        "trained on personal data, membership itself can be the secret (a patient in a disease data set).",
        "Train with differential privacy (bastion harden --method dp-sgd --target-epsilon 3: the only "
        "defense with a bound on this leak), or at least regularise (weight decay, label smoothing) and stop "
        "early (--patience); hiding confidence scores reduces but does not remove the leak.",
        holds="no membership attack does better than chance beyond noise",
        atlas=("AML.T0024.000",),
        owasp=("ML04",),
    ),
    Check(
        "BA503",
        "the model's answers reconstruct its classes",
        Severity.MEDIUM,
        "Model inversion (MI-Face, Fredrikson et al. 2015) climbed the model's released confidence to "
        "reconstruct a representative input of each class, and the reconstructions are recognised as their "
        "class (by an independent evaluator, or as nearest to their class's mean training image) far more "
        "often than chance: the answers reveal what the training data of a class looks like (a face, for "
        "a recognition model).",
        "Release labels or rounded scores instead of full probabilities (--output-policy labels|round2 "
        "shows the effect), train with differential privacy or stronger regularisation, and rate-limit "
        "queries: inversion needs thousands per class.",
        holds="MI-Face reconstructions are not recognised above chance",
        atlas=("AML.T0024.001",),
        owasp=("ML03",),
    ),
    Check(
        "BA601",
        "character tricks evade the text model",
        Severity.HIGH,
        "Invisible characters (zero-width spaces, joiners, bidi controls) or look-alike letters from other "
        "scripts (Cyrillic 'а' for 'a') change the text model's decision while a person reads the same text "
        "(Boucher et al. 2022, Bad Characters). Anyone can paste them: a moderation or spam filter is "
        "bypassed without any model access beyond trying.",
        "Put the sanitiser in front of the model (bastion.text.SanitisedTextClassifier: strips invisible "
        "characters, maps confusables to their UTS #39 skeleton, NFKC); the report's sanitiser rows show "
        "its effect on these attacks and on clean accuracy.",
        holds="invisible-character and homoglyph attacks flip at most 1% of the texts",
        atlas=("AML.T0015", "AML.T0043.001"),
        owasp=_ML01,
    ),
    Check(
        "BA602",
        "the tabular model predicts (nearly) one class",
        Severity.HIGH,
        "More than 95% of the model's predictions on the audited records are one class while the labels "
        "are not: an attacker who wants that class needs no attack, and robust accuracy rewards such a model "
        "(it equals the class's share whatever the attack). A 'robust' model that is degenerate is not "
        "robust, it is broken.",
        "Read balanced accuracy and MCC (in the report beside robust accuracy), not accuracy; retrain with "
        "class weights or resampling, or with a milder adversarial-training budget that keeps both classes.",
        holds="the model's predictions are not (nearly) one class",
        atlas=("AML.T0015",),
        owasp=_ML01,
    ),
    Check(
        "BA603",
        "an attack counted an adversarial that breaks the threat model",
        Severity.HIGH,
        "The audit re-checked every adversarial an attack counted as a success against the threat model's "
        "constraints (text: edit budget and similarity constraints; tabular: mutability, ranges, one-hot, "
        "relations) and some fail. The attacks verify their output themselves, so this is a bug in bastion, "
        "and the robust accuracy reported is too low by those records.",
        "Report it with report.json (the evidence names the records); do not trust this audit's robust "
        "accuracy until it is fixed.",
        holds="every counted adversarial meets the threat model's constraints",
        atlas=_EVASION,
        owasp=_ML01,
    ),
    Check(
        "BA701",
        "an adversarial patch takes over the prediction",
        Severity.MEDIUM,
        "One small visible patch, fitted on some of the audited inputs and pasted at random places, scales, "
        "angles and brightness on held-out ones, makes the model answer the attacker's class far more often "
        "than a random patch of the same size at the same places (Brown et al. 2017). It is printed once and "
        "works on any input: a sticker on a sign, a pattern on clothing; no epsilon bounds it.",
        "Consider derandomized smoothing (bastion.certify.DerandomizedSmoothing: a certified patch size per "
        "input, docs/certify.md) or universal patch adversarial training (bastion harden --method patch "
        "--patch-area A); the report's patch image shows what the attacker would print.",
        holds="a fitted patch succeeds on held-out inputs at most 20 points above a random patch",
        atlas=("AML.T0015", "AML.T0043.000", "AML.T0041"),
        owasp=_ML01,
    ),
    Check(
        "BA702",
        "a universal perturbation fools the model",
        Severity.MEDIUM,
        "One input-agnostic perturbation inside the audited linf ball, fitted on some of the audited inputs, "
        "changes the label of many held-out inputs, far more than random noise of the same norm "
        "(Moosavi-Dezfooli et al. 2017): the attacker needs no access to the input it is added to, so it can "
        "be computed once and broadcast (a filter, a display overlay).",
        "Train with adversarial training at this epsilon (bastion harden) or universal adversarial training "
        "(Shafahi et al. 2020); a model robust to per-input attacks at epsilon is robust to universal ones.",
        holds="a universal perturbation fools held-out inputs at most 20 points more often than noise",
        atlas=("AML.T0015", "AML.T0043.000"),
        owasp=_ML01,
    ),
    Check(
        "BA703",
        "rotations and translations fool the model",
        Severity.MEDIUM,
        "Small rotations and shifts of the image, no pixel noise at all, change the prediction on many "
        "correctly classified inputs (worst of k random transforms, Engstrom et al. 2019): a camera held at "
        "a slight angle, an object off centre. lp robustness says nothing about them.",
        "Train with rotation and translation augmentation, better with worst-of-k spatial adversarial "
        "training (Engstrom et al. 2019: worst-of-10 during training); check that deployment crops and "
        "aligns inputs the way training did.",
        holds="worst-of-k rotations and translations cost at most 20 points of accuracy",
        atlas=("AML.T0015", "AML.T0041"),
        owasp=_ML01,
    ),
    Check(
        "BA704",
        "accuracy collapses under a common corruption",
        Severity.MEDIUM,
        "At some severity of a common corruption (noise, blur, contrast, brightness; Hendrycks & Dietterich "
        "2019) the model loses at least 25 points of accuracy: ordinary conditions (a dim room, a "
        "blurred camera) break it without any attacker, and an attacker who controls them breaks it for "
        "free.",
        "Train with these corruptions as augmentation (AugMix, Hendrycks et al. 2020, or bastion.corruptions "
        "at severities 1-3; hold the others out to measure), and monitor the deployed inputs' quality.",
        holds="no audited corruption severity costs 25 points of accuracy or more",
        atlas=("AML.T0015",),
        owasp=_ML01,
    ),
]

CATALOG: dict[str, Check] = {c.code: c for c in _CHECKS}


@dataclass(frozen=True)
class Finding:
    """One failed check. threat names the threat model it concerns ("" for model-wide checks)."""

    code: str
    severity: Severity
    title: str
    detail: str
    meaning: str
    action: str
    threat: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    atlas: tuple[str, ...] = ()
    owasp: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "title": self.title,
            "detail": self.detail,
            "meaning": self.meaning,
            "action": self.action,
            "threat": self.threat,
            "evidence": self.evidence,
            "atlas": list(self.atlas),
            "owasp": list(self.owasp),
        }


def finding(code: str, detail: str, *, threat: str = "", **evidence: Any) -> Finding:
    """The catalogued finding code with a sample-specific detail and its evidence numbers."""
    check = CATALOG[code]
    return Finding(
        code=code,
        severity=check.severity,
        title=check.title,
        detail=detail,
        meaning=check.meaning,
        action=check.action,
        threat=threat,
        evidence=evidence,
        atlas=check.atlas,
        owasp=check.owasp,
    )
