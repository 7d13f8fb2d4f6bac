"""A tiny *trained* model with a measurable benign skill and a latent harmful one.

A random-init model has no skill to keep or lose, so a hardening verdict on it shows nothing.
``train_tiny_skill`` SFTs a ``seamharden.tiny`` Llama on the built-in data the ``tiny`` recipe
uses, in two phases like an aligned LM: first the harmful answers of ``adv`` (every prompt) next
to the benign ``bgn`` answers, then refusals (``builtin_refusals``) on those same prompts next to
``bgn``. The harmful capability stays latent under the refusals, so a fine-tuning attack can
revive it. Benign training uses a subset of the D_bgn training stream ``protect`` builds for the
recipe: never the records held out for the attack suite (``split_heldout(bgn, heldout_fraction,
split_seed)``), and ``val_samples`` prompts fewer (``reserve_prompts``, the prompts a utility
controller with ``utility.val_samples`` of that size scores), so benign scores on those records
measure generalisation, not memory.

Deterministic in ``seed`` (same weights on every run, one thread); about 25 s on one CPU thread.
Examples are encoded with the package's own ``encode_example`` / ``collate`` (chat template)
and trained with ``lm_loss``.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from seamharden.core.losses import lm_loss
from seamharden.data import (
    builtin_refusals,
    collate,
    encode_example,
    load_builtin,
    pad_id,
    split_heldout,
)
from seamharden.data.streams import reserve_prompts
from seamharden.tiny import build_tiny_model, build_tiny_tokenizer


@dataclass(frozen=True)
class TinySkillConfig:
    """Model size and the two SFT phases (steps at batch ``batch_size``, half benign, half adv)."""

    seed: int = 0
    hidden_size: int = 64
    intermediate_size: int = 128
    layers: int = 2
    max_length: int = 64
    batch_size: int = 16
    lr: float = 3e-3
    harmful_steps: int = 250
    refusal_steps: int = 150
    heldout_fraction: float = 0.2   # as the recipe's data.heldout_fraction
    split_seed: int = 42            # as the recipe's train.seed: which bgn records the suite holds out
    val_samples: int = 32           # bgn prompts also kept out of training (a controller set of utility.val_samples=32)


def _phase(model, optimizer, adv: list[dict], bgn: list[dict], steps: int, batch_size: int, pad: int,
           rng: random.Random) -> float:
    """``steps`` AdamW steps on batches of half ``bgn``, half ``adv`` examples; returns the last loss."""
    loss = torch.tensor(float("nan"))
    half = batch_size // 2
    for _ in range(steps):
        batch = collate(rng.sample(bgn, half) + rng.sample(adv, batch_size - half), pad)
        optimizer.zero_grad(set_to_none=True)
        loss = lm_loss(model, batch)
        loss.backward()
        optimizer.step()
    return loss.item()


def untrained_tiny_skill_model(config: TinySkillConfig = TinySkillConfig()):
    """``(model, tokenizer)``: the fp32 Llama ``train_tiny_skill`` starts from (seeded random init).

    Also the yardstick of the tests: the benign loss a model of this shape has without training.
    """
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(
        "llama", seed=config.seed, vocab_size=len(tokenizer), attn_implementation="eager",
        hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
    )
    return model, tokenizer


def train_tiny_skill(out_dir: str | Path, config: TinySkillConfig = TinySkillConfig()) -> Path:
    """Train the two-phase tiny model and save it (safetensors + tokenizer) to ``out_dir``; returns ``out_dir``.

    Writes ``tiny_skill.json`` beside the weights with the config and the last loss of each phase.
    """
    out_dir = Path(out_dir)
    model, tokenizer = untrained_tiny_skill_model(config)
    pad = pad_id(tokenizer)
    model.train()

    def encode(records: list[dict]) -> list[dict]:
        return [encode_example(tokenizer, r["prompt"], r["response"], "chat", config.max_length) for r in records]

    bgn_train, _ = split_heldout(load_builtin("bgn"), config.heldout_fraction, config.split_seed)
    bgn_train, _ = reserve_prompts(bgn_train, config.val_samples, config.split_seed)
    adv = load_builtin("adv")
    refusals = builtin_refusals()
    bgn = encode(bgn_train)
    harmful = encode(adv)
    refused = encode([{"prompt": r["prompt"], "response": refusals[i % len(refusals)]} for i, r in enumerate(adv)])

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    last_harmful = _phase(model, optimizer, harmful, bgn, config.harmful_steps, config.batch_size, pad, rng)
    last_refusal = _phase(model, optimizer, refused, bgn, config.refusal_steps, config.batch_size, pad, rng)

    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "tiny_skill.json").write_text(json.dumps(
        {"config": asdict(config), "last_loss": {"harmful": last_harmful, "refusal": last_refusal}}, indent=1))
    return out_dir
