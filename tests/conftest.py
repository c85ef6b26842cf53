"""Shared pytest configuration: opt-in markers for long, network and browser checks."""

import pytest

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
