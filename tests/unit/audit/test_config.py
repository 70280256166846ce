import pytest

from bastion.audit import AuditConfig, ConfigError, Severity, load_config
from bastion.threat import Norm


def test_defaults_are_valid_and_serialisable():
    cfg = AuditConfig()
    assert cfg.threats == ((Norm.LINF, 0.1),)
    d = cfg.to_dict()
    assert d["threats"] == [{"norm": "linf", "epsilon": 0.1}] and d["fail_on"] == "high"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threats": (("linf", 0.0),)}, "epsilon must be"),
        ({"threats": (("linf", float("inf")),)}, "epsilon must be"),
        ({"threats": ()}, "at least one threat"),
        ({"preset": "quick"}, "unknown preset"),
        ({"fail_on": "critical"}, "unknown severity"),
        ({"limit": 0}, "limit"),
        ({"min_robust_accuracy": 1.5}, "min_robust_accuracy"),
        ({"eot_samples": 0}, "eot_samples"),
    ],
)
def test_bad_values_are_refused_with_the_reason(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AuditConfig(**kwargs)


def test_norm_strings_are_parsed_and_duplicates_dropped():
    cfg = AuditConfig(threats=(("Linf", 0.1), ("linf", 0.1), ("l2", 1)))
    assert cfg.threats == ((Norm.LINF, 0.1), (Norm.L2, 1.0))
    assert AuditConfig(fail_on="medium").fail_on is Severity.MEDIUM


def test_toml_file(tmp_path):
    path = tmp_path / "audit.toml"
    path.write_text(
        'preset = "fast"\nlimit = 50\nfail_on = "medium"\n'
        '[[threat]]\nnorm = "linf"\nepsilon = [0.05, 0.1]\n'
        '[[threat]]\nnorm = "l2"\nepsilon = 1.0\n'
        "[checks]\ncurve = false\nsamples = 20\n"
    )
    cfg = load_config(path)
    assert cfg.preset == "fast" and cfg.limit == 50 and cfg.fail_on is Severity.MEDIUM
    assert cfg.threats == ((Norm.LINF, 0.05), (Norm.LINF, 0.1), (Norm.L2, 1.0))
    assert cfg.curve is False and cfg.check_samples == 20


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("presett = 'fast'\n", "unknown key 'presett'"),
        ("[checks]\ncurves = true\n", "unknown key checks.curves"),
        ("[[threat]]\nnorm = 'linf'\n", "needs norm and epsilon"),
        ("preset = \n", "not valid TOML"),
    ],
)
def test_bad_toml_is_refused(tmp_path, text, match):
    path = tmp_path / "audit.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
