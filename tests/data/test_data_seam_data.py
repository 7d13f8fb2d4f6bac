"""build_seam_data: the three SEAM streams from a recipe's data section."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from seamharden.data.builtin_sets import builtin_refusals, load_builtin
from seamharden.data.formatting import IGNORE_INDEX
from seamharden.data.seam_data import build_seam_data
from seamharden.errors import UserError
from seamharden.recipe.schema import DataSection, DataSource


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


SMALL = DataSection(adv=DataSource(kind="builtin", path="adv", max_samples=40),
                    aln=DataSource(kind="builtin", path="adv", max_samples=40),
                    bgn=DataSource(kind="builtin", path="bgn", max_samples=40))


def prompts(records):
    return {r["prompt"] for r in records}


def test_default_data_holds_out_adv_prompts_from_adv_and_aln(tokenizer):
    data = build_seam_data(DataSection(), tokenizer, batch_size=4, seed=0)
    adv = load_builtin("adv")
    assert len(data.heldout_adv) == round(0.2 * len(adv))
    assert prompts(data.records["adv"]) | prompts(data.heldout_adv) == prompts(adv)
    assert prompts(data.heldout_adv).isdisjoint(prompts(data.records["adv"]))
    assert prompts(data.heldout_adv).isdisjoint(prompts(data.records["aln"]))
    assert prompts(data.records["aln"]) == prompts(data.records["adv"])
    assert all(r["response"] in builtin_refusals() for r in data.records["aln"])
    assert prompts(data.heldout_bgn).isdisjoint(prompts(data.records["bgn"]))
    assert data.template == "chat"


def test_streams_yield_masked_batches_within_max_length(tokenizer):
    data = build_seam_data(DataSection(max_length=32), tokenizer, batch_size=3, seed=0)
    for stream in (data.adv, data.aln, data.bgn):
        batch = next(stream)
        assert batch["input_ids"].shape[0] == 3 and batch["input_ids"].shape[1] <= 32
        assert (batch["labels"] != IGNORE_INDEX).any(dim=1).all()
        assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_fingerprints_are_deterministic_and_track_the_seed(tokenizer):
    a = build_seam_data(SMALL, tokenizer, 2, seed=0).fingerprints
    assert set(a) == {"adv", "aln", "bgn", "heldout_adv", "heldout_bgn"}
    assert a == build_seam_data(SMALL, tokenizer, 2, seed=0).fingerprints
    assert a["heldout_adv"] != build_seam_data(SMALL, tokenizer, 2, seed=1).fingerprints["heldout_adv"]


def test_resumed_data_continues_every_stream(tokenizer):
    straight = build_seam_data(SMALL, tokenizer, 4, seed=0)
    expected = [next(straight.aln) for _ in range(12)]
    first = build_seam_data(SMALL, tokenizer, 4, seed=0)
    for _ in range(9):
        next(first.aln)
    resumed = build_seam_data(SMALL, tokenizer, 4, seed=0)
    resumed.load_state_dict(first.state_dict())
    assert resumed.aln.epoch == 1
    for e in expected[9:]:
        assert torch.equal(e["input_ids"], next(resumed.aln)["input_ids"])


def test_separate_aln_source_drops_heldout_adv_prompts(tokenizer, tmp_path):
    base = build_seam_data(DataSection(), tokenizer, 2, seed=0)
    held = sorted(prompts(base.heldout_adv))[:2]
    path = tmp_path / "aln.jsonl"
    rows = [{"prompt": p, "response": "No."} for p in held + ["fresh prompt"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = DataSection(aln=DataSource(kind="local", path=str(path)), aln_refusals="dataset")
    data = build_seam_data(cfg, tokenizer, 2, seed=0)
    assert data.records["aln"] == [{"prompt": "fresh prompt", "response": "No."}]


def test_dataset_refusals_on_the_adv_source_is_user_error(tokenizer):
    with pytest.raises(UserError, match="same source as data.adv"):
        build_seam_data(DataSection(aln_refusals="dataset"), tokenizer, 2, seed=0)


def test_generate_refusals_use_the_callable(tokenizer):
    with pytest.raises(UserError, match="generate"):
        build_seam_data(DataSection(aln_refusals="generate"), tokenizer, 2, seed=0)
    data = build_seam_data(DataSection(aln_refusals="generate"), tokenizer, 2, seed=0,
                           generate=lambda ps: ["model says no"] * len(ps))
    assert {r["response"] for r in data.records["aln"]} == {"model says no"}


def test_empty_source_after_where_is_user_error(tokenizer):
    cfg = DataSection(bgn=DataSource(kind="builtin", path="bgn", where={"prompt": "nothing like this"}))
    with pytest.raises(UserError, match="data.bgn .* no rows"):
        build_seam_data(cfg, tokenizer, 2, seed=0)


def test_anchor_data_gets_its_own_stream_of_bgn_and_extra_records(tokenizer):
    """``utility.anchor_data``: the anchor's stream mixes D_bgn's training records with the extra ones,
    the three SEAM streams are those of a run without it, and its position is checkpointed."""
    facts = DataSource(kind="builtin", path="chat_facts")
    plain = build_seam_data(SMALL, tokenizer, 4, seed=0)
    data = build_seam_data(SMALL, tokenizer, 4, seed=0, anchor_data=facts)
    assert plain.anchor is None and plain.anchor_stream is plain.bgn and "anchor" not in plain.state_dict()
    assert data.records == plain.records and data.anchor_stream is data.anchor
    assert set(data.fingerprints) - set(plain.fingerprints) == {"anchor_data"}
    assert len(data.anchor.examples) == len(data.records["bgn"]) + len(load_builtin("chat_facts"))
    for name in ("adv", "aln", "bgn"):
        assert next(getattr(data, name))["input_ids"].equal(next(getattr(plain, name))["input_ids"])
    next(data.anchor)
    state = data.state_dict()
    resumed = build_seam_data(SMALL, tokenizer, 4, seed=0, anchor_data=facts)
    resumed.load_state_dict(state)
    assert next(resumed.anchor)["input_ids"].equal(next(data.anchor)["input_ids"])


def test_anchor_data_never_holds_held_out_validation_or_duplicate_prompts(tokenizer):
    """``chat_facts`` repeats records of the built-in ``bgn`` set: with ``data.bgn: bgn`` those that the split
    held out or carved for validation are dropped, and those in D_bgn's training split are not counted twice."""
    facts = load_builtin("chat_facts")
    data = build_seam_data(DataSection(), tokenizer, 4, seed=0, val_samples=8,
                           anchor_data=DataSource(kind="builtin", path="chat_facts"))
    kept_out = prompts(data.heldout_bgn) | prompts(data.val_bgn)
    assert kept_out & prompts(facts)  # the case the filter is for
    train = prompts(data.records["bgn"])
    extra = [r for r in facts if r["prompt"] not in kept_out | train]
    assert len(data.anchor.examples) == len(data.records["bgn"]) + len(extra) < len(data.records["bgn"]) + len(facts)
    with pytest.raises(UserError, match="anchor_data has no rows left"):
        build_seam_data(SMALL, tokenizer, 4, seed=0, anchor_data=SMALL.bgn)
