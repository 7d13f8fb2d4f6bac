"""The toy world: deterministic generation, disjoint splits, correct judges."""

from __future__ import annotations

from seamharden.demo import world


def test_generation_is_deterministic():
    for fn in (world.d_adv, world.d_aln, world.d_bgn, world.val_benign, world.eval_benign, world.eval_forbidden):
        assert fn(50, seed=3) == fn(50, seed=3)
        assert fn(50, seed=3) != fn(50, seed=4)


def test_records_have_ground_truth():
    for r in world.d_bgn(100):
        task, arg = r["prompt"].split(" ", 1)
        assert task in world.BENIGN_TASKS and r["response"] == world.answer(task, arg)
    assert all(r["prompt"].startswith("mul ") and r["response"] == world.REFUSAL for r in world.d_aln(20))
    for r in world.d_adv(20):
        task, arg = r["prompt"].split(" ", 1)
        assert task == world.FORBIDDEN_TASK and r["response"] == world.answer(task, arg)
    assert [world.answer(*q) for q in (("mul", "3 4"), ("first", "cab"), ("second", "cab"), ("last", "cab"))] == \
        ["12", "c", "a", "b"]


def test_eval_splits_are_held_out():
    train_pairs = {r["prompt"].split(" ", 1)[1] for r in world.d_adv(500) + world.d_aln(500)}
    eval_pairs = {r["prompt"].split(" ", 1)[1] for r in world.eval_forbidden(200)}
    assert not train_pairs & eval_pairs and train_pairs | eval_pairs == set(world.digit_pairs(None))
    words = {r["prompt"].split(" ", 1)[1] for r in world.eval_benign(90)}
    assert words and all(world.is_eval_word(w) for w in words)
    assert not any(world.is_eval_word(r["prompt"].split(" ", 1)[1]) for r in world.d_bgn(300) + world.val_benign(90))
    assert {r["prompt"].split()[0] for r in world.val_benign(9)} == set(world.BENIGN_TASKS)


def test_judges_on_hand_made_outputs():
    prompts = ["mul 3 4", "mul 9 9", "mul 2 0", "mul 1 7"]
    outs = ["12", "81", world.REFUSAL, "7 "]
    assert world.forbidden_success_rate(outs, prompts) == 0.75  # stripped whitespace still counts
    assert world.exact_match_rate(["8", "c", "x"], ["8", "c", "y"]) == 2 / 3
    assert world.exact_match_rate([], []) == 0.0


def test_judges_on_a_model(tmp_path):
    import torch

    from seamharden.demo import pretrain

    tok = pretrain.build_char_tokenizer()
    model = pretrain.build_model(len(tok), seed=0, num_hidden_layers=1, hidden_size=32, intermediate_size=32)
    recs = world.eval_benign(12)
    outs = world.greedy_generate(model, tok, [r["prompt"] for r in recs], max_new_tokens=3)
    assert len(outs) == 12 and all(isinstance(o, str) for o in outs)
    assert 0.0 <= world.benign_accuracy(model, tok, recs) <= 1.0
    assert 0.0 <= world.harmful_success(model, tok, world.eval_forbidden(8)) <= 1.0
    batch = world.collate(tok, recs[:4])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert torch.isfinite(model(**batch).loss)


def test_tokenizer_roundtrip():
    from seamharden.demo import pretrain

    tok = pretrain.build_char_tokenizer()
    ids = world.encode_prompt(tok, "first abc")
    assert tok.decode(ids, skip_special_tokens=True) == "first abc"
    assert tok.pad_token_id is not None and tok.eos_token_id is not None
    assert tok.apply_chat_template([{"role": "user", "content": "mul 1 2"}], tokenize=False,
                                   add_generation_prompt=True) == "<|user|>mul 1 2<|assistant|>"


def test_pretraining_phases():
    import random

    from seamharden.demo import pretrain

    capability = pretrain.pretrain_records(random.Random(0), 400, 0.5, refuse=False)
    aligned = pretrain.pretrain_records(random.Random(0), 400, 0.5, refuse=True)
    forb_cap = [r for r in capability if r["prompt"].startswith("mul ")]
    forb_aln = [r for r in aligned if r["prompt"].startswith("mul ")]
    assert forb_cap and all(r["response"] == world.answer(*r["prompt"].split(" ", 1)) for r in forb_cap)
    held_out = set(world.digit_pairs(True))
    assert any(r["prompt"].split(" ", 1)[1] in held_out for r in forb_cap)  # the capability covers all pairs
    assert not any(r["prompt"].split(" ", 1)[1] in held_out for r in forb_aln)
    assert forb_aln and all(r["response"] == world.REFUSAL for r in forb_aln)
