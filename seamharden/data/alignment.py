"""D_aln: harmful prompts paired with refusals, the data of the utility-preservation loss L_up."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Literal

from seamharden.errors import UserError

RefusalMode = Literal["dataset", "templates", "generate"]
Generate = Callable[[list[str]], list[str]]


def alignment_records(adv_records: list[dict], aln_records: list[dict] | None, mode: RefusalMode,
                      refusals: Sequence[str], seed: int, generate: Generate | None = None) -> list[dict]:
    """``[{"prompt", "response"}]`` for L_up; pure given its inputs (and ``generate``).

    ``aln_records=None`` reuses the prompts of ``adv_records`` (the default recipe:
    refuse exactly what the unlearning pushes away from). Modes:
    ``dataset`` keeps the records' own responses; ``templates`` pairs each prompt with a
    refusal drawn by ``random.Random(seed)``; ``generate`` asks ``generate(prompts)``
    (e.g. the model's own refusals, in one batch call) for one answer per prompt.
    """
    source = adv_records if aln_records is None else aln_records
    prompts = [r["prompt"] for r in source]
    if mode == "dataset":
        if aln_records is None:
            raise UserError("data.aln_refusals=dataset needs a separate data.aln source with refusal responses")
        missing = sum(1 for r in source if not (r.get("response") or "").strip())
        if missing:
            raise UserError(f"data.aln_refusals=dataset but {missing} of {len(source)} aln records have no response; "
                            "set data.aln.columns.response or use aln_refusals=templates")
        return [{"prompt": r["prompt"], "response": r["response"]} for r in source]
    if mode == "templates":
        if not refusals:
            raise ValueError("no refusal templates given")
        rng = random.Random(seed)
        return [{"prompt": p, "response": refusals[rng.randrange(len(refusals))]} for p in prompts]
    if mode == "generate":
        if generate is None:
            raise ValueError("aln_refusals=generate needs a generate(prompts) callable")
        answers = list(generate(prompts)) if prompts else []
        if len(answers) != len(prompts):
            raise ValueError(f"generate returned {len(answers)} answers for {len(prompts)} prompts")
        return [{"prompt": p, "response": a} for p, a in zip(prompts, answers, strict=True)]
    raise ValueError(f"unknown aln_refusals mode {mode!r}")
