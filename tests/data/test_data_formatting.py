"""Token ids and labels: prompt masked, response + one EOS learned, truncation, padding."""

import pytest
import torch

from seamharden.data.formatting import (
    IGNORE_INDEX,
    PLAIN_TEMPLATE,
    collate,
    encode_choices,
    encode_example,
    encode_prompt,
    pad_id,
    resolve_template,
)
from seamharden.errors import UserError
from seamharden.tiny import build_tiny_tokenizer


@pytest.fixture(scope="module")
def chat_tok():
    return build_tiny_tokenizer(chat_template=True)


@pytest.fixture(scope="module")
def plain_tok():
    return build_tiny_tokenizer(chat_template=False)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_chat_example_masks_prompt_and_learns_one_eos(chat_tok):
    enc = encode_example(chat_tok, "Hi there", "Hello", template="chat", max_length=64)
    prompt_ids = ids(chat_tok, "<|user|>Hi there\n<|assistant|>")
    target = ids(chat_tok, "Hello") + [chat_tok.eos_token_id]
    assert enc["input_ids"] == prompt_ids + target
    assert enc["labels"] == [IGNORE_INDEX] * len(prompt_ids) + target
    learned = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert learned.count(chat_tok.eos_token_id) == 1 and learned[-1] == chat_tok.eos_token_id


def test_chat_template_emits_eos_but_it_is_learned_once(chat_tok):
    full = chat_tok.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], tokenize=False)
    assert chat_tok.eos_token in full
    enc = encode_example(chat_tok, "q", "a", template="auto", max_length=64)
    assert enc["input_ids"].count(chat_tok.eos_token_id) == 1


def test_plain_template_used_without_chat_template(plain_tok):
    enc = encode_example(plain_tok, "Hi", "Hello", template="auto", max_length=128)
    prompt_ids = ids(plain_tok, PLAIN_TEMPLATE.format(prompt="Hi"))
    assert enc["input_ids"][: len(prompt_ids)] == prompt_ids
    assert enc["labels"] == [IGNORE_INDEX] * len(prompt_ids) + ids(plain_tok, "Hello") + [plain_tok.eos_token_id]


def test_plain_forced_on_chat_tokenizer(chat_tok):
    enc = encode_example(chat_tok, "Hi", "Hello", template="plain", max_length=128)
    assert chat_tok.decode(enc["input_ids"]).startswith("### Instruction:\nHi\n\n### Response:\n")


def test_chat_without_template_is_user_error(plain_tok):
    with pytest.raises(UserError, match="no chat template"):
        encode_example(plain_tok, "Hi", "Hello", template="chat")
    assert resolve_template(plain_tok, "auto") == "plain"


def test_truncation_cuts_response_first(chat_tok):
    full = encode_example(chat_tok, "Hi", "Hello world, this is a long answer.", max_length=256)
    n_prompt = full["labels"].count(IGNORE_INDEX)
    cut = encode_example(chat_tok, "Hi", "Hello world, this is a long answer.", max_length=n_prompt + 3)
    assert len(cut["input_ids"]) == n_prompt + 3
    assert cut["input_ids"] == full["input_ids"][: n_prompt + 3]
    assert cut["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert chat_tok.eos_token_id not in cut["labels"]


def test_long_prompt_keeps_its_start_and_one_response_token(chat_tok):
    prompt = "word " * 200
    enc = encode_example(chat_tok, prompt, "Hello", max_length=16)
    full_prompt = ids(chat_tok, f"<|user|>{prompt}\n<|assistant|>")
    assert len(enc["input_ids"]) == 16
    assert enc["input_ids"][:15] == full_prompt[:15]
    assert enc["labels"][:15] == [IGNORE_INDEX] * 15
    assert enc["labels"][15] == ids(chat_tok, "Hello")[0]


def test_encode_prompt_ends_with_generation_prefix(chat_tok, plain_tok):
    assert chat_tok.decode(encode_prompt(chat_tok, "Hi")) == "<|user|>Hi\n<|assistant|>"
    assert plain_tok.decode(encode_prompt(plain_tok, "Hi")) == PLAIN_TEMPLATE.format(prompt="Hi")
    enc = encode_example(chat_tok, "Hi", "Hello")
    assert enc["input_ids"][: len(encode_prompt(chat_tok, "Hi"))] == encode_prompt(chat_tok, "Hi")


def test_collate_right_pads_and_masks(chat_tok):
    a = encode_example(chat_tok, "Hi", "Hello there", max_length=64)
    b = encode_example(chat_tok, "What is two plus three?", "five", max_length=64)
    batch = collate([a, b], pad_token_id=0)
    width = max(len(a["input_ids"]), len(b["input_ids"]))
    assert all(t.dtype == torch.long and t.shape == (2, width) for t in batch.values())
    for row, e in enumerate((a, b)):
        n = len(e["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == e["input_ids"]
        assert batch["labels"][row, :n].tolist() == e["labels"]
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, n:] == 0).all()


def test_pad_id_falls_back_to_eos():
    tok = build_tiny_tokenizer()
    assert pad_id(tok) == tok.pad_token_id == 0
    tok.pad_token = None
    assert pad_id(tok) == tok.eos_token_id == 2


def test_encode_choices_learn_only_the_choice_tokens(chat_tok):
    encoded = encode_choices(chat_tok, "What is the capital of Italy?", ["Rome", "Paris"])
    for enc, choice in zip(encoded, ["Rome", "Paris"], strict=True):
        assert [t for t in enc["labels"] if t != IGNORE_INDEX] == ids(chat_tok, choice)
    assert encoded[0]["labels"].count(IGNORE_INDEX) == encoded[1]["labels"].count(IGNORE_INDEX)
