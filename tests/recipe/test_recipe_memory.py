import pytest

from seamharden.recipe.memory import GIB, estimate_memory

N7B = 6_738_415_616


def _llama7b(**kw):
    args = dict(n_params=N7B, n_trainable=N7B, dtype="bfloat16", optimizer="adamw8bit",
                gradient_checkpointing=True, batch_size=4, seq_len=256, hidden_size=4096, n_layers=32)
    return estimate_memory(**{**args, **kw})


def test_matches_method_7b_numbers():
    m = _llama7b()
    assert m["weights"] / GIB == pytest.approx(12.6, abs=0.1)
    assert m["optimizer_state"] / GIB == pytest.approx(12.6, abs=0.3)
    assert m["gradients"] == m["weights"] and m["seam_buffers"] == 2 * m["weights"]
    # measured peaks (64 GiB, 77 GiB with AdamW8bit) came from a prototype with one more
    # weight-sized buffer (a saved copy of theta); the estimate must match them less that copy
    theta_copy = m["weights"]
    without_state = m["total"] - m["optimizer_state"]
    assert without_state == pytest.approx(64 * GIB - theta_copy, abs=2 * GIB)
    assert m["total"] == pytest.approx(77 * GIB - theta_copy, abs=2 * GIB)


def test_total_is_the_sum():
    m = _llama7b()
    assert m["total"] == sum(v for k, v in m.items() if k not in ("total", "pageable", "disk_kept_copies"))


def test_anchor_copy_and_kept_copies():
    plain, anchored = _llama7b(), _llama7b(reference_copy=True, kept_copies=True)
    assert anchored["anchor_reference"] == plain["weights"] and plain["anchor_reference"] == 0
    assert anchored["total"] == plain["total"] + plain["weights"]
    assert anchored["disk_kept_copies"] == 2 * plain["weights"] and plain["disk_kept_copies"] == 0


def test_optimizers_and_paging():
    assert _llama7b(optimizer="adamw")["optimizer_state"] == 8 * N7B
    paged = _llama7b(optimizer="paged_adamw8bit")
    assert paged["pageable"] == paged["optimizer_state"] == 2 * N7B and _llama7b()["pageable"] == 0


def test_lora_counts_trainable_only():
    m = _llama7b(n_trainable=40_000_000, optimizer="adamw")
    assert m["weights"] == 2 * N7B and m["gradients"] == 80_000_000 and m["optimizer_state"] == 320_000_000


def test_dtype_and_checkpointing():
    assert _llama7b(dtype="float32")["weights"] == 4 * N7B and _llama7b(dtype="auto")["weights"] == 2 * N7B
    assert _llama7b(gradient_checkpointing=False)["activations"] > 5 * _llama7b()["activations"]


@pytest.mark.parametrize("kw", [{"dtype": "int4"}, {"optimizer": "sgd"}])
def test_unknown_values_raise(kw):
    with pytest.raises(ValueError):
        _llama7b(**kw)


def test_hvp_graphs_counted():
    fd, reuse, recompute = _llama7b(), _llama7b(hvp_graph="reuse"), _llama7b(hvp_graph="recompute")
    # one twice-differentiated pass at 7B, batch 4 x 256: 32 layers x 2 x 34 x 4*256*4096 x 2 bytes / 2
    graph = 32 * 2 * 34 * 4 * 256 * 4096
    assert recompute["activations"] == graph and reuse["activations"] == 2 * graph > fd["activations"]
    assert recompute["hvp_gradient"] == fd["weights"] and reuse["hvp_gradient"] == fd["hvp_gradient"] == 0
    assert reuse["total"] - fd["total"] == 2 * graph - fd["activations"]
    # at 1,024 tokens one graph (8.5 GiB) is smaller than a weight-sized bf16 buffer (12.6 GiB): reuse holds less
    assert reuse["total"] < recompute["total"]
    # at 4 x 2048 tokens the graphs dominate: recompute holds less
    assert _llama7b(hvp_graph="reuse", seq_len=2048)["total"] > _llama7b(hvp_graph="recompute", seq_len=2048)["total"]
    with pytest.raises(ValueError):
        _llama7b(hvp_graph="keep")
