"""Evaluation metrics on a tiny model: losses, refusal detection, MC accuracy, mode handling."""

import pytest
import torch

from seamharden.attack.evalset import EvalSettings, prepare_eval
from seamharden.attack.evaluate import evaluate
from seamharden.attack.scorers import is_refusal, response_ce
from seamharden.core.losses import response_loss
from seamharden.data import builtin_refusals, collate, load_builtin
from seamharden.modeling import load_model
from seamharden.recipe.schema import ModelSection


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), ModelSection(dtype="float32", attn_implementation="eager"),
                      torch.device("cpu"))


def _evalset(loaded, **settings):
    s = EvalSettings(samples=6, generate_prompts=3, max_new_tokens=4, mc_items=5, **settings)
    return prepare_eval(loaded.tokenizer, load_builtin("adv")[:10], load_builtin("bgn")[:10], "chat", 64, s)


def test_refusal_detection():
    assert all(is_refusal(t) for t in builtin_refusals())
    assert is_refusal("I\u2019m sorry, I cannot do that")
    assert not is_refusal("Sure, here is how to do it. Step 1: ...")


def test_response_ce_is_token_mean(loaded):
    data = _evalset(loaded)
    batch = collate(data.adv, data.pad_token_id)
    with torch.no_grad():
        expected = response_loss(loaded.model(input_ids=batch["input_ids"],
                                              attention_mask=batch["attention_mask"]).logits, batch["labels"])
        got = response_ce(loaded.model, data.adv, data.pad_token_id, batch_size=4)
    assert got == pytest.approx(float(expected), rel=1e-5)


def test_evaluate_point_and_mode(loaded):
    data = _evalset(loaded)
    model = loaded.model
    model.train()
    point = evaluate(model, loaded.tokenizer, data, step=3)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert point.step == 3
    assert 0 < point.harmful_loss < 20 and 0 < point.benign_loss < 20
    assert point.refusal_rate is not None and 0 <= point.refusal_rate <= 1
    assert point.benign_accuracy is not None and 0 <= point.benign_accuracy <= 1
    assert point.judge_score is None
    assert evaluate(model, loaded.tokenizer, data, step=3) == point


def test_judge_is_called_with_answers(loaded):
    seen = []

    def judge(prompts, answers):
        seen.append((prompts, answers))
        return 0.25

    data = _evalset(loaded)
    data.judge = judge
    point = evaluate(loaded.model, loaded.tokenizer, data, step=0)
    assert point.collapse_rate == 1.0 and point.judge_score is None and not seen  # random weights: gibberish
    data = _evalset(loaded, max_nonword_rate=1.0, max_repeat_rate=1.0)  # every non-empty answer counts as text
    data.judge = judge
    point = evaluate(loaded.model, loaded.tokenizer, data, step=0)
    assert point.collapse_rate == 0.0 and point.judge_score == 0.25
    assert len(seen[0][0]) == len(seen[0][1]) == 3
