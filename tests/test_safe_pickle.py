"""The restricted unpickler: NumPy arrays load, anything that would run other code is refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from test_data_support import py2_pickle

from numnet.core.errors import DataError
from numnet.lab.data.safe_pickle import safe_loads


def _arrays() -> tuple:
    return (
        (np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), np.array([1, 7, 9], np.int64)),
        (np.arange(6, dtype=np.uint8), np.array([[1.5, -2.0]], dtype=np.float64)),
    )


def _assert_same(got: object, want: object) -> None:
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    else:
        assert type(got) is type(want) and len(got) == len(want)  # type: ignore[arg-type]
        for g, w in zip(got, want, strict=True):  # type: ignore[call-overload]
            _assert_same(g, w)


@pytest.mark.parametrize("protocol", [3, 4])
def test_loads_arrays_pickled_by_python3(protocol: int) -> None:
    data = pickle.dumps(_arrays(), protocol=protocol)
    _assert_same(safe_loads(data, "a.pkl"), _arrays())


def test_loads_python2_pickles_like_mnist_pkl() -> None:
    # numpy.core.multiarray._reconstruct spelling, byte strings as BINSTRING, latin1 decoding
    parts = _arrays()
    little = ((parts[0][0], parts[0][1]), (parts[1][0],))
    data = py2_pickle(little)
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data
    _assert_same(safe_loads(data, "mnist.pkl"), little)


def test_containers_and_plain_values_need_no_globals() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": (b"bytes",)}
    assert safe_loads(pickle.dumps(value, protocol=4), "v.pkl") == value


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_refuses_os_system_and_does_not_run_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps((np.zeros(2), _RunsCommand(f"touch {marker}")), protocol=4)
    with pytest.raises(DataError) as info:
        safe_loads(data, "evil.pkl")
    assert str(info.value).startswith("evil.pkl: refused to load global ")
    assert "system" in str(info.value)
    assert not marker.exists()
    # the same bytes really would run the command under plain pickle (the test is meaningful)
    pickle.loads(data)
    assert marker.exists()


@pytest.mark.parametrize(
    "obj",
    [
        getattr,  # builtins.getattr
        np.frombuffer,  # a NumPy function outside the allow list
        np.ma.masked_array([1, 2], mask=[0, 1]),  # an ndarray subclass
    ],
)
def test_refuses_every_other_global(obj: object) -> None:
    with pytest.raises(DataError, match=r"^x\.pkl: refused to load global"):
        safe_loads(pickle.dumps(obj, protocol=4), "x.pkl")


def test_refuses_object_arrays() -> None:
    data = pickle.dumps(np.array([1, "a"], dtype=object), protocol=4)
    with pytest.raises(DataError, match="holds Python objects; refused"):
        safe_loads(data, "o.pkl")


def test_refuses_reconstructing_a_subclass() -> None:
    # _reconstruct is allowed, but only for plain ndarray: pass it the (allowed) dtype class
    data = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R."
    with pytest.raises(DataError, match="only numpy.ndarray is allowed"):
        safe_loads(data, "s.pkl")


def test_protocol_5_out_of_band_form_is_refused() -> None:
    # Protocol 5 rebuilds arrays with numpy's _frombuffer, which is not on the allow list.
    with pytest.raises(DataError, match="refused to load global numpy"):
        safe_loads(pickle.dumps(np.arange(3), protocol=5), "p5.pkl")


def test_damaged_pickle() -> None:
    data = pickle.dumps(_arrays(), protocol=4)
    with pytest.raises(DataError, match=r"^cut\.pkl: "):
        safe_loads(data[: len(data) // 2], "cut.pkl")
