"""Peak GPU memory of one SEAM step, itemised, for ``protect --dry-run``.

With ``w`` bytes per weight (float32 4; bfloat16, float16 and auto 2), ``N`` parameters and
``T`` trainable ones (``T = N`` for full weights, the adapters for LoRA), batch ``b``,
sequence ``s``, hidden size ``h`` and ``L`` layers:

- weights           N * w
- gradients         T * w                 the ``.grad`` of the current backward pass
- seam_buffers      2 * T * w             the kept gradients g_a and g_b (seamharden.core.estimator
                                          turns them into directions and reuses each to save
                                          theta during its perturbed pass: no third copy)
- hvp_gradient      T * w for ``seam.difference=hvp`` with ``seam.hvp_graph=recompute``: the
                    recomputed gradient with its graph, next to g_a and g_b, during each HVP;
                    0 otherwise (``reuse`` takes g_a and g_b themselves with their graphs).
                    On G > 1 GPUs always T * w, not sharded: ``reuse`` runs as ``recompute``, and
                    the double backward holds every layer's gradient in full until FSDP2's
                    reduce-scatter of that layer (measured, docs/distributed.md)
- optimizer_state   adamw: 8 * T (two fp32 moments); adamw8bit / paged_adamw8bit: 2 * T
- anchor_reference  N * w when the benign KL anchor holds a frozen copy of the starting weights
                    (``utility.reference`` copy); 0 without an anchor or under LoRA (adapters
                    disabled: the model itself is the reference)
- activations       no checkpointing:  L * 34 * b*s*h * w/2
                    checkpointing:     L * b*s*h * w  +  34 * b*s*h * w/2  (layer inputs kept,
                                       one layer recomputed); 34*b*s*h bytes is a 16-bit
                                       transformer layer without attention scores
                                       (Korthikanti et al. 2022); logits are not counted
                    hvp: max(the above, n * L * 34 * b*s*h * w) with n the twice-differentiated
                                       passes' graphs held at once (reuse 2, recompute 1). Such
                                       a graph keeps every layer's activations (a checkpointed
                                       layer's recompute stays referenced by the graph-building
                                       backward, so checkpointing saves nothing there) plus
                                       that backward's own saved tensors, taken as as many
                                       again: an arithmetic estimate, not measured; the math
                                       kernel's attention scores are not counted. Reuse holds
                                       less than recompute while n_graph_bytes < T * w, i.e.
                                       below b*s ~ 12 h / 34 tokens (about 1,450 at 7B).
- total             the sum; ``pageable`` is the part a paged optimizer may move to CPU RAM.
- disk_kept_copies  not GPU memory: the utility controller's kept weights on disk, 2 * T * w at
                    most (the copy the last checkpoint refers to, and a newer one until the next
                    checkpoint); 0 without the controller.

Across ``G`` GPUs (``distributed.world_size``, FSDP2 per decoder layer + root, docs/distributed.md),
per GPU: weights, gradients, seam_buffers, optimizer_state and anchor_reference are sharded
(ceil(x / G)); activations are those of ceil(b / G) sequences; and one more item counts what
FSDP2 gathers in full on every rank during a pass (0 on one GPU):

- unsharded_params  (R + 2 * Y) * w + (R + Y) * w  with R the root's parameters (embeddings,
                    output head, final norm: N minus the decoder layers), Y = (N - R) / L one layer:
                    the root's and two layers' weights (the current one and the prefetched next)
                    gathered, plus the root's and one layer's full gradient before its reduce-scatter.

The attack suite (``estimate_attack_memory``) is a separate, later peak: the model loaded again,
a full fine-tuning attack's gradients and optimizer state (torch AdamW: two moments in the
weight dtype, 2 * w per weight; SGD: none), activations of the attack batch; the pristine copy
the suite restores between attacks sits in host memory (N * w, ``host_pristine_copy``).

Cross-check against measurements (Llama-2-7B shape, bf16, batch 4 x 256, checkpointing, H100):
a weight-sized bf16 buffer is 12.6 GiB, AdamW8bit state 12.8 GiB. A prototype that kept a
separate copy of theta (5 weight-sized buffers, 63 GiB) peaked at 64 GiB, 77 GiB with AdamW8bit
state; without that copy this estimate gives 50.6 GiB and 63 GiB.
Allocator fragmentation and kernels' workspaces come on top; keep a few GiB of margin.
"""

from __future__ import annotations

_WEIGHT_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}
_STATE_BYTES = {"adamw": 8, "adamw8bit": 2, "paged_adamw8bit": 2}
_SEAM_BUFFERS = 2
_LAYER_ACTIVATION_FACTOR = 34
_HVP_GRAPHS = {None: 0, "recompute": 1, "reuse": 2}

GIB = 1024**3


def estimate_memory(
    n_params: int,
    n_trainable: int,
    dtype: str,
    optimizer: str,
    gradient_checkpointing: bool,
    batch_size: int,
    seq_len: int,
    hidden_size: int,
    n_layers: int,
    *,
    reference_copy: bool = False,
    kept_copies: bool = False,
    world_size: int = 1,
    root_params: int = 0,
    hvp_graph: str | None = None,
) -> dict[str, int]:
    """Itemised peak-memory estimate in bytes (see the module docstring for the formula).

    Keys: weights, gradients, seam_buffers, hvp_gradient, optimizer_state, anchor_reference,
    activations, total, pageable, disk_kept_copies (the last three are not summed into ``total``).
    ``hvp_graph``: the recipe's ``seam.hvp_graph`` when the step runs the exact ``hvp`` estimator
    (``reuse`` or ``recompute``), None for finite differences or beta = 0.
    ``dtype`` is the recipe's ``model.dtype`` (``auto`` counts as 2 bytes); ``optimizer`` is
    ``train.optimizer``. ``world_size`` G > 1: per-GPU figures under FSDP2 sharding, with
    ``root_params`` the parameters outside the decoder layers (see the module docstring).
    Raises ``ValueError`` for an unknown dtype or optimizer.
    """
    if dtype not in _WEIGHT_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_WEIGHT_BYTES)}")
    if optimizer not in _STATE_BYTES:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {sorted(_STATE_BYTES)}")
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if hvp_graph not in _HVP_GRAPHS:
        raise ValueError(f"unknown hvp_graph {hvp_graph!r}; expected one of {sorted(_HVP_GRAPHS, key=str)}")
    w = _WEIGHT_BYTES[dtype]
    activations = _activations(-(-batch_size // world_size), seq_len, hidden_size, n_layers, w,
                               gradient_checkpointing)
    graphs = _HVP_GRAPHS[hvp_graph]
    if graphs and world_size > 1:
        graphs, hvp_graph = 1, "recompute"  # on FSDP2 shards reuse runs as recompute (docs/distributed.md)
    if graphs:
        activations = max(activations, graphs * _twice_differentiated(-(-batch_size // world_size), seq_len,
                                                                      hidden_size, n_layers, w))

    def shard(count: int) -> int:
        return -(-count // world_size)

    items = {
        "weights": shard(n_params) * w,
        "gradients": shard(n_trainable) * w,
        "seam_buffers": _SEAM_BUFFERS * shard(n_trainable) * w,
        "hvp_gradient": n_trainable * w if hvp_graph == "recompute" else 0,
        "optimizer_state": _STATE_BYTES[optimizer] * shard(n_trainable),
        "anchor_reference": shard(n_params) * w if reference_copy else 0,
        "activations": activations,
    }
    if world_size > 1:
        items["unsharded_params"] = _unsharded(n_params, root_params, n_layers, w)
    items["total"] = sum(items.values())
    items["pageable"] = items["optimizer_state"] if optimizer.startswith("paged_") else 0
    items["disk_kept_copies"] = 2 * n_trainable * w if kept_copies else 0
    return items


def _activations(batch: int, seq_len: int, hidden: int, n_layers: int, w: int, checkpointing: bool) -> int:
    tokens_hidden = batch * seq_len * hidden
    layer = _LAYER_ACTIVATION_FACTOR * tokens_hidden * w // 2
    return n_layers * tokens_hidden * w + layer if checkpointing else n_layers * layer


def _twice_differentiated(batch: int, seq_len: int, hidden: int, n_layers: int, w: int) -> int:
    """One pass's graph kept for a double backward: every layer's activations + as many again."""
    return 2 * n_layers * (_LAYER_ACTIVATION_FACTOR * batch * seq_len * hidden * w // 2)


def _unsharded(n_params: int, root_params: int, n_layers: int, w: int) -> int:
    """Bytes FSDP2 holds in full on each rank during a pass (module docstring: unsharded_params)."""
    layer = (n_params - root_params) // n_layers
    return (root_params + 2 * layer) * w + (root_params + layer) * w


_ATTACK_STATE_WEIGHTS = {"adamw": 2, "sgd": 0}


def estimate_attack_memory(
    n_params: int,
    dtype: str,
    optimizer: str,
    gradient_checkpointing: bool,
    batch_size: int,
    seq_len: int,
    hidden_size: int,
    n_layers: int,
    *,
    world_size: int = 1,
    root_params: int = 0,
) -> dict[str, int]:
    """Per-GPU peak of the attack suite's largest full fine-tuning attack, in bytes.

    ``optimizer``: the attacker's (``adamw`` or ``sgd``); ``batch_size``: its global batch.
    Keys: weights, gradients, optimizer_state, activations, unsharded_params (G > 1 only),
    total (their sum) and host_pristine_copy (host memory, not summed).
    """
    if dtype not in _WEIGHT_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_WEIGHT_BYTES)}")
    w = _WEIGHT_BYTES[dtype]
    shard = -(-n_params // world_size)
    items = {
        "weights": shard * w,
        "gradients": shard * w,
        "optimizer_state": _ATTACK_STATE_WEIGHTS[optimizer] * shard * w,
        "activations": _activations(-(-batch_size // world_size), seq_len, hidden_size, n_layers, w,
                                    gradient_checkpointing),
    }
    if world_size > 1:
        items["unsharded_params"] = _unsharded(n_params, root_params, n_layers, w)
    items["total"] = sum(items.values())
    items["host_pristine_copy"] = n_params * w
    return items
