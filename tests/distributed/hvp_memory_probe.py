"""Peak host memory of the sharded exact HVP (``ShardedAutograd.hvp_backward``) against the layer count.

Run: ``MALLOC_MMAP_THRESHOLD_=65536 OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2
tests/distributed/hvp_memory_probe.py LAYERS`` (gloo, CPU; the malloc setting returns freed tensors to
the OS, so the resident set follows the live tensors). A Llama of hidden 512 whose weights dwarf its
activations (2 rows of the worker's batch); rank 0 prints the peak resident-set growth (Linux VmHWM,
reset through /proc/self/clear_refs) of one hvp_backward, of its graph-building half alone, and of a
plain backward. Not a test: docs/distributed.md quotes what it prints.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch

from seamharden.core.losses import lm_loss
from seamharden.distributed import runtime, sharded
from seamharden.tiny import build_tiny_model, build_tiny_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run by torchrun as a script, outside pytest
from tests.core.helpers import make_batch  # noqa: E402
from tests.distributed.seam_step_worker import ADV  # noqa: E402

MIB = 2**20


def resident() -> tuple[int, int]:
    """(peak, current) resident set of this process in bytes."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]) * 1024, int(fields["VmRSS"].split()[0]) * 1024


def reset_peak() -> int:
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return resident()[1]


def main(layers: str) -> None:
    torch.set_num_threads(1)
    world = runtime.init_process_group(timeout_s=60)
    tokenizer = build_tiny_tokenizer(400)
    model = build_tiny_model("llama", seed=0, vocab_size=len(tokenizer), attn_implementation="eager",
                             hidden_size=512, num_hidden_layers=int(layers), intermediate_size=1376).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    batch = runtime.split_batch(make_batch(ADV[:2], tokenizer), world)
    modules = sharded.shard_model(model, runtime.device_mesh(world, "cpu"))
    ops = sharded.ShardedAutograd(modules)
    params = list(model.parameters())
    direction = [torch.randn_like(p) for p in params]

    def hvp() -> None:
        ops.hvp_backward(lambda: ops.mean(lm_loss(model, batch), batch), params, direction, 1.0, 0)

    hvp()  # warm-up: FSDP2's buffers, the process group's
    first_half = []
    backward = sharded._GatheredDot.backward  # runs first in the second backward: the first half is over

    def marked(ctx, grad):
        if not first_half:
            first_half.append(resident()[0])
        return backward(ctx, grad)

    sharded._GatheredDot.backward = staticmethod(marked)
    base = reset_peak()
    hvp()
    peak = resident()[0]
    sharded._GatheredDot.backward = staticmethod(backward)
    for p in params:
        p.grad = None
    plain_base = reset_peak()
    ops.mean(lm_loss(model, batch), batch).backward()
    plain = resident()[0]
    if world.is_main:
        print(f"layers {layers}: weights {weights / MIB:.1f} MiB in full; peak growth per rank: hvp_backward "
              f"{(peak - base) / MIB:.1f} MiB (graph-building half {(first_half[0] - base) / MIB:.1f} MiB), "
              f"plain backward {(plain - plain_base) / MIB:.1f} MiB", flush=True)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
