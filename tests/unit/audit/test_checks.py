from bastion.audit.checks import beats_white_box, material, monotone_in_epsilon, unbounded_reaches_all
from bastion.audit.findings import CATALOG, Severity


def test_material_needs_two_and_one_percent():
    assert not material(1, 50)
    assert material(2, 50)
    assert not material(2, 500) and material(5, 500)


def test_beats_white_box_codes():
    assert beats_white_box("square", 1, 10, 100, threat="t") is None
    f = beats_white_box("square", 5, 10, 100, threat="linf ε=0.1")
    assert f is not None and f.code == "BA205" and f.severity is Severity.HIGH
    assert f.evidence == {"fooled": 5, "attacked": 10, "n": 100}
    for kind, code in [("fgsm", "BA203"), ("stronger", "BA204"), ("transfer", "BA206"), ("noise", "BA207")]:
        found = beats_white_box(kind, 10, 10, 100, threat="t")
        assert found is not None and found.code == code


def test_unbounded():
    assert unbounded_reaches_all(100, 100, "linf") is None
    assert unbounded_reaches_all(99, 100, "linf") is None
    f = unbounded_reaches_all(90, 100, "linf")
    assert f is not None and f.code == "BA201"


def test_monotone_flags_a_material_rise_only():
    falling = [(0.0, 0.9), (0.1, 0.5), (0.2, 0.1)]
    assert monotone_in_epsilon(falling, 100, "linf") is None
    noisy = [(0.0, 0.9), (0.1, 0.5), (0.2, 0.51)]
    assert monotone_in_epsilon(noisy, 100, "linf") is None
    rising = [(0.0, 0.9), (0.1, 0.3), (0.2, 0.6), (0.3, 0.0)]
    f = monotone_in_epsilon(rising, 100, "linf")
    assert f is not None and f.code == "BA202" and f.evidence["epsilon_to"] == 0.2


def test_catalog_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[3] / "docs" / "checks.md").read_text()
    for code, check in CATALOG.items():
        assert f"`{code}`" in doc, f"{code} is missing from docs/checks.md"
        assert check.meaning and check.action
