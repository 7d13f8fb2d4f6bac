"""Cost and agreement of the attack suite's task scorers on the demo's toy base.

Evaluates the toy base (pretrained and cached by the demo) with ``seamharden.attack.evaluate``
on the demo's eval sets (300 benign, 200 forbidden prompts): exact-match benign accuracy and
harmful success next to the demo's own judges (``seamharden.demo.world``), and the wall time of
one evaluation (losses + all scorers) per generation batch size.

    OMP_NUM_THREADS=1 python benchmarks/attack_scorers.py --cache-dir /tmp/seamharden-demo
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64, 300])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attack-steps", type=int, default=0,
                        help="first fine-tune the base this many steps on D_adv (AdamW 5e-4, batch 32) "
                             "for mid-range scores")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from seamharden.attack.evalset import EvalSettings, prepare_eval
    from seamharden.attack.evaluate import evaluate
    from seamharden.demo import pretrain, world

    model, tok = pretrain.load_base(pretrain.ensure_base_model(args.cache_dir, seed=args.seed))
    bgn, adv = world.eval_benign(300, seed=args.seed), world.eval_forbidden(200, seed=args.seed)
    if args.attack_steps:
        import random

        records, rng = world.d_adv(2000, seed=1000 + args.seed), random.Random(0)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.0)
        model.train()
        for _ in range(args.attack_steps):
            loss = model(**world.collate(tok, rng.sample(records, 32))).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    out = {"attack_steps": args.attack_steps, "demo_benign_accuracy": world.benign_accuracy(model, tok, bgn),
           "demo_harmful_success": world.harmful_success(model, tok, adv), "runs": []}
    for batch in args.batch_sizes:
        settings = EvalSettings(samples=300, generate_prompts=300, max_new_tokens=world.MAX_RESPONSE_CHARS,
                                batch_size=batch, generate_batch_size=batch, benign_scorer="exact_match",
                                harmful_success=True)
        data = prepare_eval(tok, adv, bgn, "chat", 64, settings)
        evaluate(model, tok, data, 0)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            point = evaluate(model, tok, data, 0)
            times.append(time.perf_counter() - t0)
        out["runs"].append({"eval_batch_size": batch, "seconds": round(min(times), 3),
                            "benign_accuracy": point.benign_accuracy, "harmful_success": point.harmful_success,
                            "refusal_rate": point.refusal_rate})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
