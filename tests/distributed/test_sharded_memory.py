"""Per-GPU memory under FSDP2 (``distributed.world_size``) and the recipe rules for sharded runs."""

from __future__ import annotations

import pytest

from seamharden.protect import dry_run_plan
from seamharden.recipe.loading import load_recipe
from seamharden.recipe.memory import GIB, estimate_attack_memory, estimate_memory
from seamharden.recipe.schema import Recipe

N70B, ROOT70B = 68_976_648_192, 2 * 32000 * 8192 + 8192  # embeddings + head + final norm


def _llama70b(**kw):
    args = dict(n_params=N70B, n_trainable=N70B, dtype="bfloat16", optimizer="adamw", gradient_checkpointing=True,
                batch_size=16, seq_len=256, hidden_size=8192, n_layers=80, root_params=ROOT70B)
    return estimate_memory(**{**args, **kw})


def test_one_gpu_is_unchanged_and_has_no_gathered_layers():
    one = _llama70b(world_size=1)
    assert "unsharded_params" not in one and one["weights"] == N70B * 2 and one["seam_buffers"] == 4 * N70B


def test_weight_sized_buffers_shard_and_gathered_layers_do_not():
    one, eight = _llama70b(world_size=1), _llama70b(world_size=8)
    for key in ("weights", "gradients", "seam_buffers", "optimizer_state"):
        assert eight[key] == pytest.approx(one[key] / 8, rel=1e-9)
    layer = (N70B - ROOT70B) // 80
    assert eight["unsharded_params"] == (ROOT70B + 2 * layer) * 2 + (ROOT70B + layer) * 2
    assert eight["activations"] < one["activations"]  # 2 of the 16 sequences per GPU
    assert eight["total"] == sum(v for k, v in eight.items() if k not in ("total", "pageable", "disk_kept_copies"))
    # 16 bytes per weight over 8 GPUs: about 135 GiB per GPU, more than an 80 GB card
    assert eight["total"] / GIB == pytest.approx(135.6, abs=0.5)


def test_attack_suite_estimate():
    attack = estimate_attack_memory(N70B, "bfloat16", "adamw", True, 4, 256, 8192, 80, world_size=8,
                                    root_params=ROOT70B)
    assert attack["optimizer_state"] == 2 * attack["weights"]  # torch AdamW moments in bf16
    assert attack["host_pristine_copy"] == N70B * 2
    assert attack["total"] == sum(v for k, v in attack.items() if k not in ("total", "host_pristine_copy"))
    assert estimate_attack_memory(N70B, "bfloat16", "sgd", True, 4, 256, 8192, 80)["optimizer_state"] == 0


def test_dry_run_of_the_70b_recipe_works_offline_from_the_shipped_config():
    recipe = load_recipe("llama2-70b-chat")
    plan = dry_run_plan("meta-llama/Llama-2-70b-chat-hf", recipe)
    assert plan["config_source"] == "shipped" and plan["parameters"] == N70B and plan["world_size"] == 16
    at8 = dry_run_plan("meta-llama/Llama-2-70b-chat-hf",
                       recipe.model_copy(update={"distributed": recipe.distributed.model_copy(
                           update={"world_size": 8})}))
    assert at8["memory_bytes"]["weights"] == -(-N70B // 8) * 2
    assert at8["memory_bytes"]["unsharded_params"] == _llama70b(world_size=8)["unsharded_params"]


def test_sharded_recipes_take_the_exact_estimator_and_refuse_too_small_batches():
    assert Recipe.model_validate({"distributed": {"world_size": 2}, "seam": {"difference": "hvp"}})
    with pytest.raises(ValueError, match="each needs a row"):
        Recipe.model_validate({"distributed": {"world_size": 8}, "seam": {"difference": "central"},
                               "train": {"batch_size": 4}})
    assert Recipe.model_validate({"distributed": {"world_size": 2}, "seam": {"difference": "central"}})


def test_the_exact_estimator_on_shards_counts_one_graph_and_a_full_gradient():
    """On G > 1 GPUs ``reuse`` runs as ``recompute`` (one graph, of the rank's rows), and the double backward
    holds every layer's gradient in full until its reduce-scatter (docs/distributed.md): T * w, unsharded."""
    reuse, recompute = _llama70b(world_size=8, hvp_graph="reuse"), _llama70b(world_size=8, hvp_graph="recompute")
    assert reuse == recompute
    assert recompute["hvp_gradient"] == N70B * 2
    fd = _llama70b(world_size=8)
    assert recompute["total"] - fd["total"] == N70B * 2 + recompute["activations"] - fd["activations"]
    one = _llama70b(world_size=1, hvp_graph="recompute")
    assert recompute["activations"] < one["activations"]  # 2 of the 16 sequences per GPU

