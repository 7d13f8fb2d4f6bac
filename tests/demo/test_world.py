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


def test_pretraining_batches_use_the_package_encoding():
    """The chat-template encoding gives exactly the toy's format: <|user|>p<|assistant|>r<|eos|>, labels on r<|eos|>."""
    from seamharden.demo import pretrain

    tok = pretrain.build_char_tokenizer()
    assert tok.apply_chat_template([{"role": "user", "content": "mul 1 2"}], tokenize=False,
                                   add_generation_prompt=True) == "<|user|>mul 1 2<|assistant|>"
    records = [{"prompt": "first cab", "response": "c"}, {"prompt": "mul 3 4", "response": "12"}]
    batch = pretrain.encode_batch(tok, records)
    want = tok("<|user|>first cab<|assistant|>c<|eos|>", add_special_tokens=False)["input_ids"]
    assert batch["input_ids"][0].tolist() == want  # the longer record: no padding
    assert batch["labels"][0].tolist() == [-100] * (len(want) - 2) + want[-2:]
    assert batch["input_ids"][1, -1] == tok.pad_token_id and batch["labels"][1, -1] == -100
    assert tok.decode(batch["input_ids"][1][batch["labels"][1] != -100]) == "12<|eos|>"


def test_world_files_round_trip(tmp_path):
    import json

    paths = world.write_world_data(tmp_path, seed=3, n_data=20, n_val=9, n_attack=10, n_eval_benign=6,
                                   n_eval_forbidden=5)
    assert set(paths) == set(world.DATA_FILES)
    sets = world.world_sets(3, n_data=20, n_val=9, n_attack=10, n_eval_benign=6, n_eval_forbidden=5)
    for name, path in paths.items():
        assert [json.loads(line) for line in open(path)] == sets[name]
    assert sets["attack_adv"] != world.d_adv(10, seed=3)  # the attacker's own draw


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


def test_attack_benign_records_are_fresh_training_words():
    """The benign control's records: the skill on training words, none of the defender's or evaluation prompts."""
    sets = world.world_sets(0)
    fresh = sets["attack_bgn"]
    assert len(fresh) == 500
    assert all(r["response"] == world.answer(*r["prompt"].split(" ", 1)) for r in fresh)
    assert not any(world.is_eval_word(r["prompt"].split(" ", 1)[1]) for r in fresh)
    defender = {r["prompt"] for r in sets["bgn"] + sets["val_bgn"]}
    assert not {r["prompt"] for r in fresh} & defender
    raw = world.attack_benign(500, seed=0)  # without the exclusion, short words repeat by chance
    assert {r["prompt"] for r in raw} & defender and world.attack_benign(500, seed=1) != raw
