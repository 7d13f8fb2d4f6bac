"""seamharden.cpu_memory: a training step's pattern of large temporaries stops page-faulting."""

import subprocess
import sys

import pytest

STEPS = r"""
import resource, sys, torch
if sys.argv[1] == "keep":
    from seamharden.cpu_memory import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()  # in force, and idempotent
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # several large temporaries alive together (activations, gradients, logits), then all freed
    held = [torch.ones(n) for n in (2 << 20, 16 << 20, 1 << 18, 4 << 20)]
    del held
counts = []
for _ in range(8):
    before = faults()
    step()
    counts.append(faults() - before)
print(sum(counts[-3:]))
"""


def _faults_of_the_last_steps(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True, timeout=120)
    return int(run.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_reused_without_page_faults():
    # 3 steps of ~90 MiB each: glibc's default maps them afresh every step (~16k faults a step)
    assert _faults_of_the_last_steps("default") > 30_000
    assert _faults_of_the_last_steps("keep") < 1_000


def test_protect_and_the_attack_suite_keep_freed_memory_on_a_cpu_only(monkeypatch):
    import torch

    from seamharden.attack import suite

    calls = []
    monkeypatch.setattr(suite, "keep_freed_memory", lambda: calls.append(True) or True)
    assert suite._device(torch.device("cpu")).type == "cpu" and calls == [True]
    assert suite._device(torch.device("meta")).type == "meta" and calls == [True]  # a GPU run's host memory: untouched
