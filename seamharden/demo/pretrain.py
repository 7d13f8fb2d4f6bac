"""The toy base model of the demo: a tiny Llama with a character tokenizer, pretrained here.

The base is "aligned": it solves the benign tasks and answers every forbidden prompt with
the refusal, after a first phase in which it learned the forbidden task (so the capability
is latent, and fine-tuning revives it quickly, as with a real aligned LM).
:func:`ensure_base_model` trains it once and caches a standard Hugging Face directory.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from seamharden.demo import world

BASE_VERSION = "toy-base-v5-letters"
"""Cache key: bumped whenever the world or the pretraining changes."""

SPECIAL_TOKENS = [world.PAD, world.EOS, world.USER, world.ASSISTANT, "<|unk|>"]
CHARS = world.LETTERS + world.DIGITS + " "

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

class ToyModelConfig(BaseModel):
    """The toy Llama's shape (166 k parameters at these values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_size: int = Field(64, gt=0)
    intermediate_size: int = Field(192, gt=0)
    num_hidden_layers: int = Field(3, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(4, gt=0)
    max_position_embeddings: int = Field(64, gt=0)


class PretrainSettings(BaseModel):
    """The toy base's pretraining: two phases, then cached (``BASE_VERSION`` names these values).

    For ``capability_steps`` the forbidden prompts are answered (the model learns the task),
    then refused (alignment). label_smoothing keeps the base from becoming infinitely sure of
    its refusal, which made fine-tuning on D_adv wreck everything. 2000 steps rather than 1000:
    on 1000, one base in four lost a third of its benign skill to the attack itself.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(2000, gt=0)
    capability_steps: int = Field(1400, ge=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(3e-3, gt=0)
    warmup: int = Field(50, gt=0)
    forbidden_fraction: float = Field(0.25, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)


def build_char_tokenizer():
    """A character-level ``PreTrainedTokenizerFast`` (pad/eos/role tokens, chat template)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + list(CHARS))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<|unk|>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tk.decoder = decoders.Fuse()
    tk.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=world.PAD, eos_token=world.EOS,
                                   unk_token="<|unk|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


TOY_SHAPE = ToyModelConfig()
PRETRAIN = PretrainSettings()


def build_model(vocab_size: int, seed: int = 0, shape: ToyModelConfig = TOY_SHAPE):
    """The toy Llama (random init, seeded, fp32, eager attention)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, bos_token_id=None,
                         tie_word_embeddings=False, attn_implementation="eager", **shape.model_dump())
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).float()


def pretrain_records(rng: random.Random, n: int, forbidden_fraction: float, refuse: bool = True) -> list[dict]:
    """A pretraining batch: benign records and ``forbidden_fraction`` forbidden ones.

    ``refuse=False`` (the capability phase) answers the forbidden prompts over all digit
    pairs; ``refuse=True`` (the alignment phase) refuses them.
    """
    out = []
    for _ in range(n):
        if rng.random() < forbidden_fraction:
            out.append(world.forbidden_record(rng, pairs=False if refuse else None, refuse=refuse))
        else:
            out.append(world.benign_record(rng))
    return out


def encode_batch(tok, records: list[dict]) -> dict:
    """The package's own encoding (chat template, labels -100 on the prompt) and right-padded collate."""
    from seamharden.data import collate, encode_example

    return collate([encode_example(tok, r["prompt"], r["response"], "chat", 64) for r in records], tok.pad_token_id)


def smoothed_loss(logits, labels, smoothing: float):
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
        ignore_index=-100, label_smoothing=smoothing)


def pretrain(seed: int = 0, settings: PretrainSettings = PRETRAIN, shape: ToyModelConfig = TOY_SHAPE, log=None):
    """Train the aligned toy base from scratch; returns (model, tokenizer)."""
    p = settings.model_dump()
    torch.manual_seed(seed)
    tok = build_char_tokenizer()
    model = build_model(len(tok), seed=seed, shape=shape)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"], betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / p["warmup"]) * max(0.05, 1 - s / p["steps"]))
    rng = random.Random(f"pretrain-{seed}")
    t0 = time.time()
    for step in range(p["steps"]):
        refuse = step >= p["capability_steps"]
        batch = encode_batch(tok, pretrain_records(rng, p["batch_size"], p["forbidden_fraction"], refuse))
        loss = smoothed_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                             batch["labels"], p["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log and (step % 250 == 0 or step == p["steps"] - 1):
            log(f"pretrain step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model, tok


def ensure_base_model(cache_dir: Path, seed: int = 0, log=None) -> Path:
    """Train the toy base once and cache it under ``cache_dir/<version>-seed<seed>``; return the dir.

    Its benign skill, refusals and forbidden capability are measured by the attack suite at step 0
    (report.json of a demo run), not here.
    """
    version = BASE_VERSION
    out = Path(cache_dir) / f"{version}-seed{seed}"
    if (out / "demo_base.json").exists():
        return out
    t0 = time.time()
    model, tok = pretrain(seed=seed, log=log)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    meta = {"version": version, "seed": seed, "pretrain_seconds": round(time.time() - t0, 1)}
    (tmp / "demo_base.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
