"""Scorers on tiny models: batched greedy answers, exact match, harmful success, shared generation."""

import dataclasses

import pytest
import torch

from seamharden.attack import scorers
from seamharden.attack.evalset import EvalSettings, prepare_eval
from seamharden.attack.evaluate import evaluate
from seamharden.attack.scorers import (
    SCORERS,
    exact_match_accuracy,
    exact_match_rate,
    generate_answers,
    harmful_success,
    point_scorers,
)
from seamharden.data import collate, encode_example, encode_prompt, load_builtin, pad_id
from seamharden.modeling import load_model
from seamharden.recipe.schema import AttackSection, ModelSection

SETTINGS = EvalSettings(samples=4, generate_prompts=8, max_new_tokens=6, generate_batch_size=3,
                        benign_scorer="exact_match", harmful_success=True)


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), ModelSection(dtype="float32", attn_implementation="eager"),
                        torch.device("cpu"))
    loaded.model.eval()
    return loaded


def _manual_greedy(model, tok, prompt_ids, max_new_tokens):
    """Greedy decoding by full forward passes, one prompt at a time, stopping at EOS."""
    ids = list(prompt_ids)
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            out.append(nxt)
            ids.append(nxt)
    return tok.decode(out, skip_special_tokens=True)


def test_batched_answers_equal_one_by_one_greedy(loaded):
    model, tok = loaded.model, loaded.tokenizer
    prompts = [encode_prompt(tok, r["prompt"], "chat") for r in load_builtin("bgn")[:5]]
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    batched = generate_answers(model, tok, prompts, pad_id(tok), 6, batch_size=4)
    single = [_manual_greedy(model, tok, p, 6) for p in prompts]
    assert batched == single


class _FixedModel(torch.nn.Module):
    """``generate`` returns the prompt followed by fixed tokens (an EOS, then junk)."""

    def __init__(self, tail):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.tail = tail

    def generate(self, input_ids, **kw):
        return torch.cat([input_ids, torch.tensor([self.tail] * len(input_ids))], dim=1)


def test_answers_are_cut_at_the_first_eos(loaded):
    tok = loaded.tokenizer
    word = tok("a", add_special_tokens=False)["input_ids"]
    junk = tok("b", add_special_tokens=False)["input_ids"]
    model = _FixedModel(word + [tok.eos_token_id] + junk)
    assert generate_answers(model, tok, [[5, 6], [7]], pad_id(tok), 4) == ["a", "a"]


def test_exact_match_rate():
    assert exact_match_rate([" 12 ", "sorry", "7"], ["12", "12", " 7"]) == pytest.approx(2 / 3)
    assert exact_match_rate([], []) is None


def _records(tok, model, stream, n, template="chat"):
    """Held-out records whose responses are the model's own greedy answers for the first half, wrong after."""
    rows = load_builtin(stream)[:n]
    answers = generate_answers(model, tok, [encode_prompt(tok, r["prompt"], template) for r in rows], pad_id(tok),
                               SETTINGS.max_new_tokens)
    return [{"prompt": r["prompt"], "response": a if i < n // 2 else a + " wrong"}
            for i, (r, a) in enumerate(zip(rows, answers, strict=True))]


def test_exact_match_scorers_on_random_weights(loaded):
    model, tok = loaded.model, loaded.tokenizer
    data = prepare_eval(tok, _records(tok, model, "adv", 6), _records(tok, model, "bgn", 8), "chat", 64, SETTINGS)
    assert exact_match_accuracy(model, tok, data) == pytest.approx(0.5)
    assert harmful_success(model, tok, data) == pytest.approx(0.5)
    point = evaluate(model, tok, data, step=0)
    assert (point.benign_accuracy, point.harmful_success) == (pytest.approx(0.5), pytest.approx(0.5))
    assert data.answers is None  # the cache lives only inside evaluate


def test_exact_match_scorers_on_trained_weights(tiny_llama_dir):
    """A model trained to answer a few prompts exactly scores 1 on them and 0 on the same prompts with other answers."""
    loaded = load_model(str(tiny_llama_dir), ModelSection(dtype="float32", attn_implementation="eager"),
                        torch.device("cpu"))
    model, tok = loaded.model, loaded.tokenizer
    taught = [{"prompt": f"task {i}", "response": r} for i, r in enumerate(["yes", "no", "maybe", "42"])]
    batch = collate([encode_example(tok, r["prompt"], r["response"], "chat", 64) for r in taught], pad_id(tok))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05
    wrong = [{"prompt": r["prompt"], "response": "other"} for r in taught]
    data = prepare_eval(tok, wrong, taught, "chat", 64, SETTINGS)
    point = evaluate(model, tok, data, step=7)
    assert point.benign_accuracy == 1.0 and point.harmful_success == 0.0
    data = prepare_eval(tok, taught[:3] + wrong[3:], taught, "chat", 64, SETTINGS)
    assert harmful_success(model, tok, data) == pytest.approx(0.75)


def test_one_generation_per_stream_and_evaluation(loaded, monkeypatch):
    calls = []
    real = scorers.generate_answers

    def counting(model, tok, prompts, *args):
        calls.append(len(prompts))
        return real(model, tok, prompts, *args)

    monkeypatch.setattr(scorers, "generate_answers", counting)
    model, tok = loaded.model, loaded.tokenizer
    settings = dataclasses.replace(SETTINGS, max_nonword_rate=1.0, max_repeat_rate=1.0)  # judge even gibberish
    data = prepare_eval(tok, load_builtin("adv")[:5], load_builtin("bgn")[:3], "chat", 64, settings,
                        judge=lambda prompts, answers: 0.5)
    point = evaluate(model, tok, data, step=0)
    assert sorted(calls) == [3, 5]  # refusal, judge and harmful success share the adv answers
    assert point.judge_score == 0.5 and point.refusal_rate is not None


def test_scorers_chosen_by_settings():
    assert point_scorers(EvalSettings())["benign_accuracy"] is SCORERS["mc"]
    assert "harmful_success" not in point_scorers(EvalSettings())
    chosen = point_scorers(SETTINGS)
    assert chosen["benign_accuracy"] is SCORERS["exact_match"]
    assert chosen["harmful_success"] is SCORERS["harmful_success"]
    section = AttackSection(benign_scorer="exact_match", harmful_success=True, max_new_tokens=7, generate_prompts=300,
                            eval_samples=300)
    s = EvalSettings.from_section(section)
    assert (s.benign_scorer, s.harmful_success, s.max_new_tokens, s.generate_prompts, s.samples) == (
        "exact_match", True, 7, 300, 300)
    assert EvalSettings.from_section(AttackSection(eval_samples=4)).generate_prompts == 4
