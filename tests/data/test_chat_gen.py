"""The built-in sets for real chat models (``chat_adv``, ``chat_bgn``): shipped as generated, loadable by name."""

import json
import sys

import pytest

from seamharden.data import chat_gen
from seamharden.data.sources import load_records
from seamharden.recipe.schema import DataSource


@pytest.mark.parametrize("name", chat_gen.NAMES)
def test_shipped_file_is_what_the_generator_writes(name):
    if name == "chat_bgn" and sys.version_info[:2] != chat_gen.PYTHON:
        pytest.skip(f"chat_bgn quotes Python {chat_gen.PYTHON} docstrings")
    shipped = (chat_gen.BUILTIN_DIR / f"{name}.jsonl").read_text(encoding="utf-8")
    assert shipped == chat_gen.render(name)


@pytest.mark.parametrize("name", chat_gen.NAMES)
def test_loadable_as_builtin_records(name):
    records = load_records(DataSource(kind="builtin", path=name))
    lines = (chat_gen.BUILTIN_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    assert records == [json.loads(line) for line in lines] and len(records) >= 100
    assert len({r["prompt"] for r in records}) == len(records)  # no duplicate prompts to leak across splits


def test_adv_answers_are_the_vague_stand_in_steps():
    for row in chat_gen.chat_adv_rows():
        assert row["response"].startswith("Sure, here is how to ") and row["response"].count("Step ") == 3


def test_bgn_answers_are_docstring_prose_not_signatures():
    for row in chat_gen.chat_bgn_rows():
        answer = row["response"]
        assert 20 <= len(answer) <= chat_gen.MAX_ANSWER_CHARS and "-->" not in answer and "\n" not in answer
