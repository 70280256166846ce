import subprocess
import sys

import bastion
import bastion.attacks


def test_all_is_sorted_and_resolves():
    for mod in (bastion, bastion.attacks):
        names = [n for n in mod.__all__ if n != "__version__"]
        assert names == sorted(names), f"{mod.__name__}.__all__ is not sorted"
        for name in mod.__all__:
            assert getattr(mod, name) is not None


def test_import_is_light_and_side_effect_free(tmp_path):
    code = (
        "import sys, logging, time; t = time.perf_counter(); import bastion; dt = time.perf_counter() - t; "
        "print(dt, 'torch' in sys.modules, len(logging.getLogger().handlers))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    seconds, torch_loaded, handlers = out.stdout.split()
    assert torch_loaded == "False", "import bastion must not import torch eagerly"
    assert handlers == "0", "import bastion must not configure logging"
    assert float(seconds) < 0.5
    assert list(tmp_path.iterdir()) == [], "import bastion must not write files"


def test_unknown_attribute():
    import pytest

    with pytest.raises(AttributeError):
        bastion.does_not_exist  # noqa: B018
