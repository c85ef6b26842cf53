"""Shared pytest configuration: opt-in markers for long, network and browser checks, and the
fixtures that put the tiny synthetic digits in place of MNIST."""

import pytest
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

import numnet.lab.data

TINY_DATA = tiny_datasets()

OPT_IN = {
    "slow": "--run-slow",
    "network": "--run-network",
    "browser": "--run-browser",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run full training, real MNIST")
    parser.addoption("--run-network", action="store_true", help="run checks that reach PyPI")
    parser.addoption("--run-browser", action="store_true", help="run headless-chromium checks")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker, flag in OPT_IN.items():
            if marker in item.keywords and not config.getoption(flag):
                item.add_marker(pytest.mark.skip(reason=f"opt-in: pass {flag}"))


@pytest.fixture
def tiny_data(monkeypatch):
    """Every command gets the tiny synthetic digits instead of MNIST; returns the load calls.
    Modules that want it everywhere say ``pytestmark = pytest.mark.usefixtures("tiny_data")``."""
    calls = []

    def load(*args, **kwargs):
        calls.append((args, kwargs))
        return TINY_DATA

    monkeypatch.setattr(numnet.lab.data, "load", load)
    return calls


@pytest.fixture
def proto(tmp_path):
    """The tiny protocol file (small evaluations, quick settings) in ``tmp_path``."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PROTOCOL)
    return path
