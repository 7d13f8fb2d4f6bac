"""``seamharden fidelity`` end to end on tiny model directories, in process through ``main``."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from seamharden.cli.main import main
from seamharden.errors import ExitCode


def _run(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["fidelity", *map(str, args)])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def _json_run(capsys, *args) -> tuple[int, dict]:
    code, out, _ = _run(capsys, *args, "--json")
    return code, json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("dtype,floor", [("bf16", 0.95), ("fp32", 0.999)])
def test_default_policy_is_faithful(capsys, request, family, dtype, floor):
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    code, report = _json_run(capsys, model_dir, "--dtype", dtype)
    assert code == ExitCode.OK
    assert report["cosine"] >= floor
    assert report["reference"] == "fp64-double-backward"
    assert report["dtype"] == {"bf16": "bfloat16", "fp32": "float32"}[dtype]
    assert report["difference"] == "hvp" and report["step"] == 0 and report["parameters"] > 0


def test_below_min_cosine_exits_3(capsys, tiny_llama_dir):
    code, report = _json_run(capsys, tiny_llama_dir, "--dtype", "fp32", "--min-cosine", "1.01")
    assert code == ExitCode.ROBUSTNESS_FAILED == 3
    assert report["passed"] is False


def test_absolute_reference_epsilon_is_far_worse_in_bf16(capsys, tiny_llama_dir):
    _, relative = _json_run(capsys, tiny_llama_dir, "--dtype", "bf16", "--difference", "forward")
    code, absolute = _json_run(capsys, tiny_llama_dir, "--dtype", "bf16", "--difference", "forward",
                               "--policy", "absolute", "--epsilon", "1e-3", "--min-cosine", "0")
    assert code == ExitCode.OK
    assert absolute["step"] == pytest.approx(1e-3)
    assert absolute["cosine"] < 0.6 < relative["cosine"]
    assert absolute["applied_cosine"] < relative["applied_cosine"]


def test_saved_files_reproduce_the_printed_cosine(capsys, tiny_gpt2_dir, tmp_path):
    out_dir = tmp_path / "evidence"
    code, report = _json_run(capsys, tiny_gpt2_dir, "--dtype", "bf16", "--save", out_dir)
    assert code == ExitCode.OK
    batches = load_file(str(out_dir / "batches.safetensors"))
    assert set(batches) == {f"{s}_{k}" for s in "ab" for k in ("input_ids", "attention_mask", "labels")}
    for side in "ab":
        labels, mask = batches[f"{side}_labels"], batches[f"{side}_attention_mask"]
        assert labels.dtype == torch.long and (labels[mask == 0] == -100).all()
        assert ((labels != -100).sum(1) > 0).all() and (labels[:, 0] == -100).all()

    grads = load_file(str(out_dir / "grads.safetensors"))
    from transformers import AutoModelForCausalLM

    names = [n for n, _ in AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).named_parameters()]
    assert set(grads) == {f"{kind}.{n}" for kind in ("estimate", "reference") for n in names}
    est = torch.cat([grads[f"estimate.{n}"].double().flatten() for n in names])
    ref = torch.cat([grads[f"reference.{n}"].double().flatten() for n in names])
    assert grads[f"estimate.{names[0]}"].dtype == torch.float32
    assert grads[f"reference.{names[0]}"].dtype == torch.float64
    cos = (est @ ref / (est.norm() * ref.norm())).item()
    assert cos == pytest.approx(report["cosine"], abs=1e-5)
    assert (est - ref).norm().item() / ref.norm().item() == pytest.approx(report["relative_error"], rel=1e-4)
    saved = json.loads((out_dir / "fidelity.json").read_text())
    assert saved["cosine"] == pytest.approx(report["cosine"])


def test_table_output(capsys, tiny_llama_dir):
    code, out, _ = _run(capsys, tiny_llama_dir, "--dtype", "fp32", "--examples", "2")
    assert code == ExitCode.OK
    assert "cosine vs reference" in out and "fp64-double-backward" in out


def test_missing_directory_is_one_line_exit_2(capsys, tmp_path):
    code, out, err = _run(capsys, tmp_path / "nope")
    assert code == ExitCode.USAGE == 2
    assert err.startswith("error:") and err.strip().count("\n") == 0 and "no such directory" in err


def test_a_file_is_named_a_file_not_a_missing_directory(capsys, tmp_path):
    """Issue 17 item 11: `fidelity FILE` said "no such directory"."""
    (tmp_path / "model.safetensors").write_bytes(b"x")
    code, _, err = _run(capsys, tmp_path / "model.safetensors")
    assert code == ExitCode.USAGE
    assert err.strip().count("\n") == 0 and "is a file" in err and "no such directory" not in err
