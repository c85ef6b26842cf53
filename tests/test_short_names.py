"""The short import names: ``numnet.models``, ``numnet.layers``, ``numnet.optim``, ... work in
every import form, are the core's own objects, and ``import numnet`` stays lazy."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import numnet

SHORT = numnet.CORE_SHORT_NAMES


def test_the_forms_a_user_writes() -> None:
    import numnet.losses
    from numnet.core import layers, losses, models, optim, serialize
    from numnet.layers import Conv2D
    from numnet.models import build
    from numnet.optim import SGD
    from numnet.serialize import save

    assert build is models.build and Conv2D is layers.Conv2D and SGD is optim.SGD
    assert save is serialize.save
    assert numnet.losses.softmax_cross_entropy is losses.softmax_cross_entropy
    assert build("model1").forward([[0.0] * 784]).shape == (1, 10)


@pytest.mark.parametrize("name", SHORT)
def test_each_short_module_is_the_core_modules_public_names(name: str) -> None:
    short = importlib.import_module(f"numnet.{name}")
    core = importlib.import_module(f"numnet.core.{name}")
    public = getattr(core, "__all__", None) or [n for n in vars(core) if not n.startswith("_")]
    for attr in public:
        assert getattr(short, attr) is getattr(core, attr), f"numnet.{name}.{attr}"
    # after ``import numnet`` the attribute and the imported module are one object
    assert getattr(numnet, name) is short is sys.modules[f"numnet.{name}"]


def test_import_numnet_loads_nothing_and_attributes_load_on_use() -> None:
    code = ("import sys, numnet; before = sorted(m for m in sys.modules if m[:7] == 'numnet.');"
            "b = numnet.models.build; import numnet.models as m; from numnet.models import build;"
            "assert b is build is m.build and m is numnet.models; print(before)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'modles'"):
        numnet.modles  # noqa: B018
