"""Realistic threat presets for the shared credit datasets: what an applicant can really change.

A threat model is only as meaningful as its story. These presets start from the shared schema
(``tabular_schema.json``: ``immutable_hint`` marks protected or fixed attributes, ``observed_range``
the ranges) and add what a person could change before being scored, by how much, and at what cost.

* :func:`german_credit_threat` — an applicant filling in a loan application (German Credit,
  Statlog). See its docstring for the reasoning, feature by feature.
* :func:`taiwan_credit_threat` — a card holder shaping the six months before being scored (Default
  of Credit Card Clients, Taiwan). See its docstring.
* :func:`with_payment_total` — the derived ``PAY_AMT_TOTAL`` column and its linear relation
  (``PAY_AMT1 + ... + PAY_AMT6 - PAY_AMT_TOTAL == 0``). **No linear relation holds on every record
  of either raw dataset**: German Credit has no linked amounts, and Taiwan's accounting identity
  ``BILL_AMT[t] >= BILL_AMT[t+1] - PAY_AMT[t]`` (a new bill is at least the last one minus the
  payment) holds on only 99.56-99.62% of records (fees, refunds, corrections), so it is not added.
  The derived total shows the mechanism: a model that sees the total forces the attacker to keep
  it consistent, and :func:`bastion.tabular.repair` moves the total with its parts.
* :func:`threat_preset` — the presets by dataset name, with an error that lists them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bastion.errors import DataError, ThreatModelError
from bastion.tabular.data import TabularData
from bastion.tabular.schema import Feature, Relation, TabularSchema
from bastion.tabular.threat import TabularThreatModel

__all__ = [
    "THREAT_PRESETS",
    "german_credit_threat",
    "taiwan_credit_threat",
    "threat_preset",
    "with_payment_total",
]

PAYMENTS = tuple(f"PAY_AMT{i}" for i in range(1, 7))
BILLS = tuple(f"BILL_AMT{i}" for i in range(1, 7))
TOTAL = "PAY_AMT_TOTAL"


def _costed(schema: TabularSchema, costs: dict[str, float], directions: dict[str, str]) -> TabularSchema:
    for name, cost in costs.items():
        schema = schema.updated(name, cost=cost)
    for name, direction in directions.items():
        schema = schema.updated(name, direction=direction)
    return schema


def german_credit_threat(schema: TabularSchema, *, budget: float = 1.0) -> TabularThreatModel:
    """An applicant filling in a German Credit application (``schema``: the model's, from the shared JSON).

    Mutable, because the applicant decides them at application time:

    * ``credit_amount`` ±2,000 DM (the median loan is ~2,300 DM: asking for less, or a bit more) and
      ``duration_months`` ±12 months (choosing the repayment plan);
    * ``installment_rate`` ±1 level (the instalment as a share of disposable income follows from
      amount and duration; it is not tied to them by a formula in this data, so no relation);
    * ``purpose`` (cost 0.5: declaring another purpose), ``savings`` and ``checking_status`` (cost
      0.5 each: moving money into an account before applying), ``other_debtors`` (cost 0.5: finding
      a co-applicant or guarantor), ``telephone`` (cost 0.25: registering a phone).

    Frozen: the shared schema's ``immutable_hint`` (``age``, ``personal_status_sex``,
    ``foreign_worker`` — protected attributes), the applicant's history (``credit_history``,
    ``existing_credits``, ``employment_since``, ``residence_since``, ``other_installment_plans``) and
    circumstances that do not change before an application (``property``, ``housing``, ``job``,
    ``num_liable_people``).

    Total ``budget`` (default 1.0) in range-normalised units: 2,000 DM of credit costs 0.11, 12 months
    0.18, one instalment level 0.33, so 1.0 buys the three scalar moves plus one account change, or
    two categorical changes. Relations: none (see the module docstring).
    """
    costs = {"purpose": 0.5, "savings": 0.5, "checking_status": 0.5, "other_debtors": 0.5, "telephone": 0.25}
    schema = _costed(schema, costs, {})
    mutable = ("credit_amount", "duration_months", "installment_rate", *costs)
    return TabularThreatModel(
        schema,
        mutable=mutable,
        max_change={"credit_amount": 2000.0, "duration_months": 12.0, "installment_rate": 1.0},
        budget=budget,
    )


def taiwan_credit_threat(
    schema: TabularSchema, *, budget: float = 1.0, max_change: float = 10_000.0, money: float = 60_000.0
) -> TabularThreatModel:
    """A card holder shaping the six months before being scored (Default of Credit Card Clients).

    Mutable, because the holder controls them by behaviour: the monthly payments ``PAY_AMT1-6`` may
    only **increase** (paying more) and the statement balances ``BILL_AMT1-6`` only **decrease**
    (spending less), each by at most ``max_change`` NT$ (default 10,000, about a third of a monthly
    wage in 2005). ``PAY_AMT_TOTAL`` (from :func:`with_payment_total`, when present) moves with
    the payments through its relation.

    Frozen: ``SEX``, ``MARRIAGE``, ``AGE`` (the shared ``immutable_hint``), ``EDUCATION`` (a
    credential), ``LIMIT_BAL`` (set by the bank), ``ID`` (a row id), and the repayment statuses
    ``PAY_0``, ``PAY_2``-``PAY_6``: they are the bank's own record of past delays, and freeing them
    would make the strongest feature free; a threat that lets a holder erase a recorded delay is a
    different (insider) story.

    Total budget in money: every amount's cost is set so that ``budget`` 1.0 is ``money`` NT$
    (default 60,000) of changed amounts summed over features; the derived total costs nothing extra
    (it only restates the payments). Relations: the payment total's, when the column is present;
    no relation holds on every raw record (see the module docstring).
    """
    if money <= 0 or max_change <= 0:
        raise ThreatModelError(f"money and max_change must be > 0 NT$, got {money!r} and {max_change!r}")
    costs = {}
    for name in (*PAYMENTS, *BILLS):
        f = schema.feature(name)
        if f.low is None or f.high is None:
            raise DataError(f"feature {name!r} needs a range (low/high) in the schema for a money budget")
        costs[name] = (f.high - f.low) / money  # cost weight = cost / range = 1 / money per NT$
    directions = {n: "increase" for n in PAYMENTS} | {n: "decrease" for n in BILLS}
    mutable = [*PAYMENTS, *BILLS]
    if TOTAL in schema.names:
        t = schema.feature(TOTAL)
        costs[TOTAL] = 1e-9 * max((t.high or 1.0) - (t.low or 0.0), 1.0)
        directions[TOTAL] = "increase"
        mutable.append(TOTAL)
    schema = _costed(schema, costs, directions)
    return TabularThreatModel(
        schema,
        mutable=tuple(mutable),
        max_change={n: max_change for n in (*PAYMENTS, *BILLS)},
        budget=budget,
    )


def with_payment_total(data: TabularData) -> TabularData:
    """Taiwan data with ``PAY_AMT_TOTAL`` (the sum of ``PAY_AMT1-6``) appended as the last feature and
    the relation ``PAY_AMT1 + ... + PAY_AMT6 - PAY_AMT_TOTAL == 0`` in its schema (adjusting the total)."""
    cols = [data.schema.index(n) for n in PAYMENTS]
    total = data.x[:, cols].sum(dim=1, keepdim=True)
    low = sum(data.schema.features[c].low or 0.0 for c in cols)
    high = sum(data.schema.features[c].high or 0.0 for c in cols)
    feature = Feature(TOTAL, "integer", low=low, high=high)
    relation = Relation({**{n: 1.0 for n in PAYMENTS}, TOTAL: -1.0}, "==", 0.0, adjust=TOTAL)
    schema = TabularSchema(
        features=(*data.schema.features, feature),
        label=data.schema.label,
        classes=data.schema.classes,
        class_names=data.schema.class_names,
        relations=(*data.schema.relations, relation),
        name=data.schema.name,
    )
    return TabularData(torch.cat([data.x, total], dim=1), data.y, schema, data.classes, data.source)


THREAT_PRESETS: dict[str, Callable[..., TabularThreatModel]] = {
    "default_credit_taiwan": taiwan_credit_threat,
    "german_credit": german_credit_threat,
}


def threat_preset(name: str, schema: TabularSchema, **options: float) -> TabularThreatModel:
    """The preset for dataset ``name`` (a key of :data:`THREAT_PRESETS`, or its file name)."""
    key = name.split("/")[-1].removesuffix(".gz").removesuffix(".csv")
    if key not in THREAT_PRESETS:
        raise ThreatModelError(f"no threat preset for {name!r}; presets: {', '.join(sorted(THREAT_PRESETS))}")
    return THREAT_PRESETS[key](schema, **options)
