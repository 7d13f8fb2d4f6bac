"""``benchmarks/step_cost.py`` runs on CPU with the tiny model and reports its fields."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_cost.py"


@pytest.fixture(autouse=True)
def _restore_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def step_cost():
    spec = importlib.util.spec_from_file_location("step_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("extra", [[], ["--optimizer", "adamw8bit", "--difference", "central",
                                        "--gradient-checkpointing", "--no-self-check", "--unlearn-pass", "perturbed"]])
def test_tiny_cpu_json(step_cost, capsys, extra):
    code = step_cost.main(["--model", "tiny", "--device", "cpu", "--batch", "2", "--seq", "32",
                           "--steps", "2", "--warmup", "1", "--threads", "1", "--json", *extra])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("model", "parameters", "dtype", "device", "batch", "seq", "optimizer", "difference",
                "gradient_checkpointing", "memory_method", "time_ratio", "cpu_allocator"):
        assert key in result
    assert result["cpu_allocator"] == "freed memory kept" and result["seam"]["minor_faults_per_step"] >= 0
    assert result["dtype"] == "float32" and result["device"].startswith("cpu")
    assert result["gradient_checkpointing"] == ("--gradient-checkpointing" in extra)
    assert result["difference"] == ("central" if extra else "hvp")
    assert result["self_check"] is ("--no-self-check" not in extra)
    assert result["unlearn_pass"] == ("perturbed" if extra else "own")
    for phase in ("sft", "seam"):
        assert result[phase]["step_s"] > 0 and result[phase]["peak_gib"] > 0
        assert result[phase]["tokens_per_s"] == pytest.approx(2 * 32 / result[phase]["step_s"])
        each = result[phase]["step_s_each"]
        assert len(each) == 2 and result[phase]["step_s_median"] == pytest.approx(sum(each) / 2)
        assert result[phase]["step_s"] == pytest.approx(sum(each) / 2)
    assert result["time_ratio"] == pytest.approx(result["seam"]["step_s"] / result["sft"]["step_s"])
    assert result["time_ratio"] > 1


def test_llama2_7b_shape_config(step_cost):
    import torch

    model = step_cost.build_model("llama2-7b-shape", torch.bfloat16, torch.device("meta"))
    assert 6.7e9 < sum(p.numel() for p in model.parameters()) < 6.8e9


def test_lens_only_compares_chunked_and_full(step_cost, capsys):
    code = step_cost.main(["--model", "tiny", "--device", "cpu", "--batch", "2", "--seq", "32", "--lens-only",
                           "--steps", "1", "--warmup", "0", "--threads", "1", "--prompt-fraction", "0.5", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["ul_fwd_bwd_s"]) == {"chunked", "full"} and result["prompt_fraction"] == 0.5
    assert result["speedup"] == pytest.approx(result["ul_fwd_bwd_s"]["full"] / result["ul_fwd_bwd_s"]["chunked"])


@pytest.mark.parametrize("mode", ["--compare-hvp-graph", "--breakdown"])
def test_interleaved_and_breakdown_modes_time_every_piece(step_cost, capsys, mode):
    code = step_cost.main(["--model", "tiny", "--device", "cpu", "--batch", "2", "--seq", "32", mode,
                           "--steps", "1", "--warmup", "0", "--threads", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    pieces = {"sft", "recompute", "reuse"} if mode == "--compare-hvp-graph" else None
    if pieces:
        assert set(result["cpu_s"]) == pieces and set(result["wall_s"]) == pieces
    assert len(result["cpu_s"]) >= 3 and all(v > 0 for v in result["cpu_s"].values())


def test_unlearn_pass_perturbed_is_refused_where_it_cannot_fold(step_cost, capsys):
    with pytest.raises(SystemExit) as info:
        step_cost.main(["--model", "tiny", "--unlearn-pass", "perturbed"])  # hvp, self-checked: nothing to fold
    assert info.value.code == 2 and "unlearn_pass=perturbed cannot run" in capsys.readouterr().err
