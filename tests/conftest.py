"""Shared fixtures: tiny local models (no download) and an isolated environment; pytest-xdist scheduling."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import torch

from seamharden.tiny import save_tiny_model_dir

# Tiny models run fastest on one thread; more only adds contention on small CI runners (the CLI subprocesses too).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

_CORES_LOCK = pytest.StashKey[int]()


def pytest_configure(config):
    """Under pytest-xdist, open the run's lock on the cores: each worker's basetemp is popen-gwN in one shared dir."""
    if hasattr(config, "workerinput") and config.option.basetemp:
        lock = Path(config.option.basetemp).parent / "cores.lock"
        config.stash[_CORES_LOCK] = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)


def pytest_unconfigure(config):
    if _CORES_LOCK in config.stash:
        os.close(config.stash[_CORES_LOCK])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """``two_cores`` tests (two torchrun ranks that must meet within a collective timeout) run with no other test
    beside them, as in a one-process run; the others share the cores. The lock is held over setup, call and teardown
    (module fixtures included) and on to the next test while that is a ``two_cores`` one too (``--dist loadscope``
    keeps a module's tests together)."""
    lock = item.config.stash.get(_CORES_LOCK, None)
    if lock is None:
        return (yield)
    fcntl.flock(lock, fcntl.LOCK_EX if _two_cores(item) else fcntl.LOCK_SH)  # a no-op while held exclusively
    try:
        return (yield)
    finally:
        if not (_two_cores(item) and nextitem is not None and _two_cores(nextitem)):
            fcntl.flock(lock, fcntl.LOCK_UN)


def _two_cores(item) -> bool:
    return item.get_closest_marker("two_cores") is not None


def pytest_collection_modifyitems(config, items):
    """Modules with a ``slow`` test first, the others in their order: with ``--no-loadscope-reorder`` the workers
    start on the longest modules rather than end on them (pytest-xdist's own reorder puts the most tests first)."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch, tmp_path_factory):
    """No test may reach the Hub or read the user's token or caches."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"), "llama", seed=0)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2", seed=0)
