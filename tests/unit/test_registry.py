import pytest

from bastion import attacks
from bastion.attacks import Attack, AttackInfo
from bastion.errors import AttackError

EXPECTED = {
    "apgd-ce",
    "apgd-dlr",
    "apgd-t",
    "noise",
    "transfer",
    "cw-l2",
    "deepfool",
    "fab",
    "fab-t",
    "fgsm",
    "fmn",
    "hopskipjump",
    "pgd",
    "square",
}


def test_available_lists_every_attack():
    assert set(attacks.available()) == EXPECTED
    assert attacks.available() == sorted(attacks.available())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_get_builds_an_attack(name):
    atk = attacks.get(name)
    assert isinstance(atk, Attack)
    entry = attacks.info(name)
    assert (
        isinstance(entry, AttackInfo) and entry.norms and entry.access in {"gradient", "scores", "decisions"}
    )


def test_classes_importable_from_package():
    for cls_name in (
        "FGSM",
        "PGD",
        "APGD",
        "CarliniWagner",
        "DeepFool",
        "Square",
        "HopSkipJump",
        "FMN",
        "FAB",
    ):
        assert issubclass(getattr(attacks, cls_name), Attack)


def test_unknown_name_lists_valid():
    with pytest.raises(AttackError, match="available: apgd-ce"):
        attacks.get("nope")


def test_bad_hyperparameter_name():
    with pytest.raises(AttackError, match="pgd"):
        attacks.get("pgd", no_such_option=3)


def test_overrides_defaults():
    atk = attacks.get("apgd-t", steps=7)
    assert atk.params()["steps"] == 7 and atk.params()["targeted"] is True
