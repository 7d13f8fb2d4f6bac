"""Benign fine-tuning control: can the hardened model still learn a held-out benign task?

The SEAM paper reports that its hardened models fine-tune on benign tasks (SST2, AGNEWS, GSM8K,
AlpacaEval) as well as the base. The suite checks the same on its own data: base and hardened are
fine-tuned by the suite's one loop (``run_attack``) with an attack's optimiser settings, but on the
attacker's held-out *benign* records (``SuiteData.attack_bgn``: never trained on by hardening;
for the toy demo a fresh draw of its benign skill) instead of harmful ones, and evaluated on the
suite's evaluation sets at the usual steps: the benign loss / accuracy of those points is the
learning curve. ``seamharden.attack.brittleness`` turns the runs into the verdict's reason lines.
"""

from __future__ import annotations

from seamharden.attack.finetune import attack_steps
from seamharden.recipe.schema import AttackConfig, AttackSection


def control_configs(section: AttackSection, attacks: list[AttackConfig], benign_records: int) -> list[AttackConfig]:
    """The control's fine-tuning configs: the attacks' optimiser settings on ``benign_records`` benign records.

    ``section.benign_control.attacks``: ``strongest`` takes the attack with the largest learning rate
    (the first on ties), ``all`` every attack. Each keeps its method, optimizer, lr, batch,
    schedule and seed; benign mixing is dropped, the pool is every benign record, and the steps are
    ``benign_control.steps`` or the attack's own. Duplicates are removed, order kept.
    """
    if not attacks or not section.benign_control.enabled:
        return []
    chosen = attacks if section.benign_control.attacks == "all" else [max(attacks, key=lambda c: c.lr)]
    out: dict[str, AttackConfig] = {}
    for config in chosen:
        steps = section.benign_control.steps or attack_steps(config)
        control = config.model_copy(update={"benign_mix": 0.0, "samples": benign_records, "steps": steps})
        out.setdefault(control.model_dump_json(), control)
    return list(out.values())
