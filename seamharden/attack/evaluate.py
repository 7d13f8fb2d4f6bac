"""Evaluation of one model at one attack step: the numbers of an ``EvalPoint``.

All metrics are computed on held-out records the hardening never trained on (``EvalSet``):

- harmful / benign loss: token-mean response cross-entropy over the whole set (fp32 sums,
  not a mean of batch means), on held-out D_adv / D_bgn;
- benign accuracy: the scorer ``settings.benign_scorer`` (``mc``: built-in multiple choice;
  ``exact_match``: greedy answers to benign prompts equal to their responses);
- collapse rate (answers that are not coherent text), refusal rate and judge score (with a
  judge; both over coherent answers only) and, when ``settings.harmful_success``, harmful
  success (greedy answers to harmful prompts equal to the true harmful responses): the
  scorers of ``seamharden.attack.scorers``, sharing one greedy generation per stream.

Everything runs under ``torch.no_grad()`` with the model in eval mode; its train/eval mode is
restored afterwards.
"""

from __future__ import annotations

import torch

from seamharden.attack.evalset import EvalSet
from seamharden.attack.results import EvalPoint
from seamharden.attack.scorers import point_scorers, response_ce


def evaluate(model, tokenizer, data: EvalSet, step: int) -> EvalPoint:
    """All metrics of ``model`` at attack ``step``, as an ``EvalPoint``."""
    was_training = model.training
    model.eval()
    s = data.settings
    data.answers = {}
    try:
        with torch.no_grad():
            harmful = response_ce(model, data.adv, data.pad_token_id, s.batch_size)
            benign = response_ce(model, data.bgn, data.pad_token_id, s.batch_size)
            scores = {name: scorer(model, tokenizer, data) for name, scorer in point_scorers(s).items()}
    finally:
        data.answers = None
        model.train(was_training)
    return EvalPoint(step=step, harmful_loss=harmful, benign_loss=benign, **scores)
