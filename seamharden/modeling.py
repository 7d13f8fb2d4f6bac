"""Load a causal LM and its tokenizer from a Hub id or a local directory.

Safetensors only; ``trust_remote_code`` only when the recipe turns it on. A model
that is missing, gated or unreachable is a ``UserError`` (one line, exit code 2); a Hub id that is
not cached is probed once without retries first (``check_reachable``), so an unreachable Hub
fails at once instead of after huggingface_hub's backoff. References: ``seamharden.references``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from seamharden.errors import UserError
from seamharden.recipe.schema import ModelSection
from seamharden.references import check_model_reference, looks_like_path, resolve_model_reference

__all__ = ["DTYPES", "LoadedModel", "attach_lora", "check_model_reference", "count_parameters", "default_device",
           "load_model", "load_tokenizer", "looks_like_path", "resolve_dtype", "resolve_model_reference"]


class _NoKernelsCommunityWarning(logging.Filter):
    """Drops bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" warning, printed on
    every import on a CPU with AVX512-BF16 (peft imports bitsandbytes): it is about 4-bit kernels seamharden
    never uses. Every other bitsandbytes message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "from kernels-community" not in str(record.msg)


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_NoKernelsCommunityWarning())

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA, fp32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name_or_path: str
    revision: str | None
    commit: str | None


def _describe(err: Exception, name: str) -> str:
    from seamharden.hub.errors import explain

    reason = explain(err, None)
    if reason is not None:
        return f"model {name}: {reason}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot load model {name}: {first}"


def load_tokenizer(name: str, section: ModelSection) -> PreTrainedTokenizerBase:
    if not looks_like_path(name):
        from seamharden.hub.fetch import check_reachable

        check_reachable(name, section.revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, revision=section.revision, trust_remote_code=section.trust_remote_code
        )
    except (OSError, ValueError, HfHubHTTPError) as err:
        raise UserError(_describe(err, name)) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str, section: ModelSection, device: torch.device | None = None) -> LoadedModel:
    """Model (in train mode, on ``device``) and tokenizer, as the recipe's model section asks."""
    device = device or default_device()
    check_model_reference(name)
    tokenizer = load_tokenizer(name, section)
    kwargs = dict(
        revision=section.revision,
        trust_remote_code=section.trust_remote_code,
        dtype=resolve_dtype(section.dtype, device),
        use_safetensors=True,
    )
    if section.attn_implementation:
        kwargs["attn_implementation"] = section.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except (OSError, ValueError, HfHubHTTPError) as err:
        raise UserError(_describe(err, name)) from err
    model.to(device)
    model.train()
    if section.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    commit = getattr(model.config, "_commit_hash", None)
    return LoadedModel(model, tokenizer, name, section.revision, commit)


def attach_lora(model: PreTrainedModel, section: ModelSection) -> PreTrainedModel:
    """Wrap ``model`` with LoRA adapters (peft) when the recipe asks for them."""
    if section.lora is None:
        return model
    from peft import LoraConfig, get_peft_model

    lora = section.lora
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.target_modules, task_type="CAUSAL_LM",
    )
    if section.gradient_checkpointing:
        model.enable_input_require_grads()
    return get_peft_model(model, config)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)
