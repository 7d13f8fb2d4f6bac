"""The built-in sets for real chat models (``chat_adv``, ``chat_bgn``, ``chat_facts``): shipped as generated,
loadable by name."""

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
    assert records == [json.loads(line) for line in lines] and len(records) >= (60 if name == "chat_facts" else 100)
    assert len({r["prompt"] for r in records}) == len(records)  # no duplicate prompts to leak across splits


def test_adv_answers_are_the_vague_stand_in_steps():
    for row in chat_gen.chat_adv_rows():
        assert row["response"].startswith("Sure, here is how to ") and row["response"].count("Step ") == 3


def test_bgn_answers_are_docstring_prose_not_signatures():
    for row in chat_gen.chat_bgn_rows():
        answer = row["response"]
        assert 20 <= len(answer) <= chat_gen.MAX_ANSWER_CHARS and "-->" not in answer and "\n" not in answer


def test_facts_never_ask_what_the_suites_mc_items_ask():
    """The anchor's knowledge records hold no country (and no question) of the suite's multiple-choice items."""
    from seamharden.attack.evalset import EvalSettings
    from seamharden.data import builtin_mc

    suite = builtin_mc()[: EvalSettings.mc_items]
    countries = {it["question"].removeprefix("What is the capital of ").rstrip("?") for it in suite
                 if it["question"].startswith("What is the capital of ")}
    assert len(countries) == chat_gen.SUITE_MC_COUNTRIES
    rows = chat_gen.chat_facts_rows()
    assert not {r["prompt"] for r in rows} & {it["question"] for it in suite}
    assert not [r for r in rows if any(f" {c}?" in r["prompt"] or f" {c} " in r["response"] for c in countries)]
    assert sum(r["prompt"].startswith("What is the capital of ") for r in rows) == 40
