"""Epsilon as people write it: ``--epsilon 8/255`` parses to the float 8/255 and prints back as 8/255."""

from __future__ import annotations

import math

import pytest

from bastion.cli.common import parse_epsilon
from bastion.errors import ThreatModelError
from bastion.threat import ThreatModel, format_epsilon


@pytest.mark.parametrize(
    ("text", "value", "label"),
    [
        ("8/255", 8 / 255, "8/255"),
        ("16/255", 16 / 255, "16/255"),
        ("0.3", 0.3, "0.3"),
        ("0.1", 0.1, "0.1"),
        ("1/3", 1 / 3, "1/3"),
        ("0.5", 0.5, "0.5"),
        ("2", 2.0, "2"),
        ("inf", math.inf, "inf"),
        (" 4/255 ", 4 / 255, "4/255"),
    ],
)
def test_parse_then_format_round_trips(text, value, label):
    parsed = parse_epsilon(text)
    assert parsed == value  # exactly the float Python's own division gives
    assert format_epsilon(parsed) == label


def test_a_decimal_that_is_no_short_fraction_keeps_its_digits():
    assert format_epsilon(0.0313725) == "0.0313725"  # reads back as the same float: printed as typed
    assert format_epsilon(0.123456789) == "0.1235"


@pytest.mark.parametrize("text", ["8/0", "abc", "0", "-1/255", "nan", ""])
def test_bad_epsilons_are_one_line_errors(text):
    with pytest.raises(ThreatModelError) as info:
        parse_epsilon(text)
    assert "\n" not in str(info.value)


def test_threat_model_prints_the_fraction():
    assert str(ThreatModel("linf", 8 / 255)) == "linf eps=8/255 bounds=[0, 1]"
