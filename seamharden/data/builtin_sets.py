"""Reader for the built-in sets shipped as package data (``builtin/*.jsonl``)."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from seamharden.errors import UserError

RECORD_SETS = ("adv", "bgn", "chat_adv", "chat_bgn", "chat_facts")  # chat_*: seamharden/data/chat_gen.py


@cache
def _rows(name: str) -> tuple[dict, ...]:
    text = files("seamharden.data").joinpath("builtin", f"{name}.jsonl").read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def load_builtin(name: str) -> list[dict]:
    """Rows of the built-in prompt/response set ``name`` (one of ``RECORD_SETS``), fresh copies."""
    if name not in RECORD_SETS:
        raise UserError(f"unknown built-in data set {name!r}; choose from {', '.join(RECORD_SETS)}")
    return [dict(row) for row in _rows(name)]


def builtin_refusals() -> list[str]:
    """The refusal templates used for ``data.aln_refusals=templates``."""
    return [row["refusal"] for row in _rows("refusals")]


def builtin_mc() -> list[dict]:
    """Multiple-choice items ``{"question": str, "choices": list[str], "answer": int}`` for utility accuracy."""
    return [{**row, "choices": list(row["choices"])} for row in _rows("mc")]
