"""Tabular models under attack: feature schema, constraints, classifiers, constrained attacks.

Everything works in the **user's feature space**: a record is a row ``x`` (D,) float64 holding
numeric/integer features as values and ordinal/categorical features as indices into the feature's
``categories``; encoding and scaling live inside the model wrapper, so adversarial records are records
a person could submit.

Quick start::

    from bastion.tabular import (CPGD, TabularSchema, TabularThreatModel, load_tabular, train_mlp)

    schema = TabularSchema.from_json("tabular_schema.json", dataset="german_credit.csv.gz")
    data = load_tabular("german_credit.csv.gz", schema)          # TabularData: x (N, D), y (N,)
    train, test = data.split(0.2, seed=0)
    model = train_mlp(train, hidden=(64, 64), epochs=20, seed=0)  # TorchTabularClassifier
    threat = TabularThreatModel(schema, max_change={"credit_amount": 1000}, budget=0.2)
    result = CPGD(steps=50)(model, test.x, test.y, threat, seed=0)
    result.robust_accuracy, result.constraint_satisfaction, result.show(0)

Public API:

* schema — :class:`Feature` (name, kind numeric|integer|ordinal|categorical, categories, low, high,
  immutable, max_change, cost, direction), :class:`Relation` (coefficients, op ``==``/``<=``, rhs,
  adjust), :class:`TabularSchema` (``from_json``/``to_json``/``from_dict``/``to_dict``,
  ``validate_columns``, ``index``, ``feature``, ``names``, ``without``, ``updated``).
* data — :func:`load_tabular` (path, schema, label=None, ignore=()) -> :class:`TabularData`
  (x, y, schema, classes, ``split``, ``subset``, ``records``); :func:`records` (x, schema) -> list of
  dicts and its inverse :func:`from_records` (dicts, schema) -> x.
* encoding — :class:`Encoder` (``fit(schema, x)``, ``encode`` (N, D) -> (N, M) float32,
  ``relaxed_encode(x, probs)`` -> (N, M) float64, ``decode``, ``slices``, ``width``,
  ``scalar_columns``, ``categorical_blocks``).
* models — :class:`TabularClassifier` protocol (schema, num_classes, differentiable,
  ``__call__(x) -> logits``); :class:`TorchTabularClassifier` (module, encoder; ``logits_encoded``);
  :class:`SklearnTabularClassifier` (estimator with predict_proba, schema, encoder=None; ``queries``);
  :func:`train_mlp`.
* threat — :class:`TabularThreatModel` (schema, mutable, max_change, budget, relations, tolerance;
  ``cost``, ``distance``, ``movable``, ``to_dict``);
  :func:`repair`, :func:`satisfied`, :func:`violations`, :func:`feasible_box`, :data:`CONSTRAINTS`.
* attacks — :class:`TabularAttack` (final ``__call__(model, x, y, threat, generator=, seed=)``,
  subclasses implement ``_run``), :class:`CPGD`, :class:`TabularAttackResult` (x, x_adv, y, success,
  valid, predictions, changed, cost, queries, gradient_evals, ``robust_accuracy``,
  ``constraint_satisfaction``, ``summary()``, ``changes(i)``, ``show(i)``); :class:`MoEvA`
  (population, generations, mutation, step, extreme, unbounded_std: the gradient-free genetic search
  for black-box models); :class:`TabularCascade` (stages, default CPGD then MoEvA) ->
  :class:`TabularCascadeResult` (result, stages: :class:`CascadeStage`).
* threats — :func:`german_credit_threat`, :func:`taiwan_credit_threat`, :func:`threat_preset`
  (name, schema), :data:`THREAT_PRESETS`, :func:`with_payment_total` (Taiwan's derived total and its
  relation).
* defense and verdict — :func:`adversarial_train` (data, threat, attack=CPGD(steps=10), mix=0.5, ...)
  -> TorchTabularClassifier; :func:`robustness_report` (model, x, y, result=None) ->
  :class:`RobustnessReport` (clean/balanced accuracy, MCC, robust accuracy, ``degenerate``);
  :func:`balanced_accuracy`, :func:`matthews`.

Writing another attack: subclass :class:`TabularAttack`, set ``name`` and ``access`` ("scores" for
black-box attacks, which then accept :class:`SklearnTabularClassifier`), and implement
``_run(model, x, y, threat, generator=)`` returning candidate records (N, D). ``model`` is a
:class:`CountingTabularClassifier` (query it as ``model(x)``); :func:`feasible_box` gives each
feature's allowed interval, ``threat.movable()`` / ``threat.cost_weights()`` the rest, and
:func:`repair` projects a candidate. The base class repairs, re-verifies and counts; never bypass it.

Shared data notes: Taiwan's ``ID`` is a row id (``schema.without("ID")`` and
``load_tabular(..., ignore=["ID"])``); Adult's ``fnlwgt`` is a census sampling weight and
``education``/``education_num`` move together (not a linear relation under the shared schema, where
``education`` is categorical): freeze them in realistic threat models (``mutable=``).
"""

from __future__ import annotations

from bastion.tabular.adversarial_training import adversarial_train
from bastion.tabular.attacks import (
    CPGD,
    CascadeStage,
    CountingTabularClassifier,
    MoEvA,
    TabularAttack,
    TabularCascade,
    TabularCascadeResult,
)
from bastion.tabular.constraints import CONSTRAINTS, feasible_box, repair, satisfied, violations
from bastion.tabular.data import TabularData, from_records, load_tabular, records
from bastion.tabular.encoding import Encoder
from bastion.tabular.model import SklearnTabularClassifier, TabularClassifier, TorchTabularClassifier
from bastion.tabular.results import TabularAttackResult
from bastion.tabular.robustness import RobustnessReport, balanced_accuracy, matthews, robustness_report
from bastion.tabular.schema import Feature, Relation, TabularSchema
from bastion.tabular.threat import TabularThreatModel
from bastion.tabular.threats import (
    THREAT_PRESETS,
    german_credit_threat,
    taiwan_credit_threat,
    threat_preset,
    with_payment_total,
)
from bastion.tabular.train import train_mlp

__all__ = [
    "CONSTRAINTS",
    "CPGD",
    "CascadeStage",
    "CountingTabularClassifier",
    "Encoder",
    "Feature",
    "MoEvA",
    "Relation",
    "RobustnessReport",
    "SklearnTabularClassifier",
    "THREAT_PRESETS",
    "TabularAttack",
    "TabularAttackResult",
    "TabularCascade",
    "TabularCascadeResult",
    "TabularClassifier",
    "TabularData",
    "TabularSchema",
    "TabularThreatModel",
    "TorchTabularClassifier",
    "adversarial_train",
    "balanced_accuracy",
    "feasible_box",
    "from_records",
    "german_credit_threat",
    "load_tabular",
    "matthews",
    "records",
    "repair",
    "robustness_report",
    "satisfied",
    "taiwan_credit_threat",
    "threat_preset",
    "train_mlp",
    "violations",
    "with_payment_total",
]
