"""Multiple-choice accuracy of models and of saved weights, on the built-in items split as the suite uses them.

The suite scores the first ``EvalSettings.mc_items`` (16) built-in items (``seamharden/data/builtin/mc.jsonl``:
15 capitals and a sum); the other 29 (sums, opposites) are never scored by it. This prints both shares for
MODEL_DIR and, with ``--weights``, for each safetensors file of trainable weights loaded into MODEL_DIR in
turn: e.g. the utility controller's kept copies of a run (``<run>/kept/step-N/trainable.safetensors``,
copied out while the run trains: ``protect`` deletes them when it finishes). docs/smollm2.md, session 7.

    python benchmarks/mc_items.py smollm2-135m out/r13 out/s12 --weights copies/step-*.safetensors \\
        --template chat --out mc.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def score_items(model_dirs: list[str], weights: list[str], template: str, max_length: int = 64) -> list[dict]:
    """One row per model directory, then one per weights file loaded into the first directory's model."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seamharden.attack.evalset import EvalSettings
    from seamharden.attack.scorers import mc_accuracy
    from seamharden.data import builtin_mc, encode_choices, pad_id
    from seamharden.train.checkpoint import copy_weights

    tokenizer = AutoTokenizer.from_pretrained(model_dirs[0])
    items = [(encode_choices(tokenizer, it["question"], it["choices"], template, max_length), int(it["answer"]))
             for it in builtin_mc()]
    split, pad = EvalSettings.mc_items, pad_id(tokenizer)

    def row(model, name: str) -> dict:
        with torch.no_grad():
            return {"model": name, "suite_items": mc_accuracy(model, items[:split], pad),
                    "other_items": mc_accuracy(model, items[split:], pad)}

    rows, model = [], None
    for path in model_dirs:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        rows.append(row(model, Path(path).name))
    model = AutoModelForCausalLM.from_pretrained(model_dirs[0], dtype=torch.float32).eval()
    for path in weights:
        copy_weights(model, load_file(path))
        rows.append(row(model, Path(path).name))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", help="model directories; the first also takes --weights")
    parser.add_argument("--weights", nargs="*", default=[], help="safetensors files of trainable weights")
    parser.add_argument("--template", default="chat", help="the recipe's data.template (chat, plain, auto)")
    parser.add_argument("--out", help="append the rows here as JSON lines")
    args = parser.parse_args()
    rows = score_items(args.model_dirs, args.weights, args.template)
    for r in rows:
        print(f"{r['model']}: suite's {r['suite_items']:.3f}, other {r['other_items']:.3f}", flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
