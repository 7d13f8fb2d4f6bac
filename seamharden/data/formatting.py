"""Turning (prompt, response) text into token ids and loss labels, and batching them.

Only response tokens are learned: every loss in SEAM (ascent on D_adv, SFT on
D_aln and D_bgn, and the gradients g_a, g_b) is a next-token loss on the answer,
so prompt tokens and padding carry the label ``IGNORE_INDEX``. One EOS closes
each complete response so the model also learns (or unlearns) when to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from seamharden.errors import UserError

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"

Template = Literal["auto", "chat", "plain"]


def resolve_template(tokenizer, template: Template) -> Literal["chat", "plain"]:
    """``auto`` -> ``chat`` when the tokenizer has a chat template, else ``plain``."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return "chat" if has_chat else "plain"
    if template == "chat" and not has_chat:
        raise UserError("data.template=chat but the tokenizer has no chat template; use template=plain or auto")
    if template not in ("chat", "plain"):
        raise UserError(f"unknown data.template {template!r}; choose auto, chat or plain")
    return template


def eos_id(tokenizer) -> int:
    """The tokenizer's EOS id; a causal LM without one cannot be trained to stop."""
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no eos token; set one in the model's tokenizer config")
    return int(tokenizer.eos_token_id)


def pad_id(tokenizer) -> int:
    """The pad id used for batching: the tokenizer's pad token, else its EOS."""
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else eos_id(tokenizer)


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _bos_prefix(tokenizer) -> list[int]:
    """[bos] when the tokenizer adds one by default (Llama-style), else [] (GPT-2, Qwen)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    default = tokenizer("x", add_special_tokens=True)["input_ids"]
    return [bos] if default and default[0] == bos else []


def _chat_texts(tokenizer, prompt: str, response: str) -> tuple[str, str]:
    """(prompt text with generation prefix, response text without the template's EOS/trailer)."""
    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
    tail = full[len(head):] if full.startswith(head) else response
    eos = tokenizer.eos_token or ""
    tail = tail.rstrip()
    while eos and tail.endswith(eos):
        tail = tail[: -len(eos)].rstrip()
    return head, tail


def encode_prompt(tokenizer, prompt: str, template: Template = "auto") -> list[int]:
    """Token ids of ``prompt`` plus the generation prefix, ready for ``model.generate``."""
    if resolve_template(tokenizer, template) == "chat":
        head = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return _ids(tokenizer, head)
    return _bos_prefix(tokenizer) + _ids(tokenizer, PLAIN_TEMPLATE.format(prompt=prompt))


def encode_example(tokenizer, prompt: str, response: str, template: Template = "auto",
                   max_length: int = 256, add_eos: bool = True) -> dict[str, list[int]]:
    """``{"input_ids", "labels"}``, equal-length int lists; labels are -100 on the prompt.

    The learned part is the response tokens plus exactly one EOS (``add_eos``), whatever
    the chat template emits after the answer. Over ``max_length`` the response is cut
    first (a cut response keeps no EOS: it is not a complete answer); a prompt that
    alone fills ``max_length`` keeps its first ``max_length - 1`` tokens and one
    response token.
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    if resolve_template(tokenizer, template) == "chat":
        head, tail = _chat_texts(tokenizer, prompt, response)
        prompt_ids = _ids(tokenizer, head)
    else:
        tail = response
        prompt_ids = _bos_prefix(tokenizer) + _ids(tokenizer, PLAIN_TEMPLATE.format(prompt=prompt))
    target = _ids(tokenizer, tail) + ([eos_id(tokenizer)] if add_eos else [])
    if not target:
        raise ValueError("empty response with add_eos=False leaves nothing to learn")
    prompt_ids = prompt_ids[: max_length - 1]
    target = target[: max_length - len(prompt_ids)]
    return {"input_ids": prompt_ids + target, "labels": [IGNORE_INDEX] * len(prompt_ids) + target}


def encode_choices(tokenizer, question: str, choices: Sequence[str], template: Template = "auto",
                   max_length: int = 256) -> list[dict[str, list[int]]]:
    """One ``encode_example`` per choice, without EOS, for multiple-choice scoring.

    The summed log-likelihood of a choice is taken over its non -100 labels, so
    choices are compared on their own tokens only.
    """
    return [encode_example(tokenizer, question, choice, template, max_length, add_eos=False) for choice in choices]


def collate(examples: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of encoded examples into LongTensors ``[B, T]``, T = longest example.

    ``attention_mask`` is 1 on real tokens; ``labels`` are -100 on padding.
    """
    if not examples:
        raise ValueError("cannot collate an empty batch")
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"], dtype=torch.long)
        labels[row, :n] = torch.tensor(e["labels"], dtype=torch.long)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device`` (the one batch-to-device helper of the package)."""
    return {k: v.to(device) for k, v in batch.items()}
