"""The fixed-length control of demo runs: every attack's last point (its full 200 steps), from report.json.

    python benchmarks/demo_fixed_length.py beta1.jsonl      # JSON lines written by benchmarks/demo_seeds.py

Prints one markdown row per seed: harmful success / benign accuracy after each attack's last step,
base then hardened (each run's ``out_dir`` must still exist).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    for r in sorted(rows, key=lambda r: r["seed"]):
        report = json.loads((Path(r["out_dir"]) / "report.json").read_text())
        cells: dict[str, list[str]] = {}
        for run in report["results"]["runs"]:
            p = run["points"][-1]
            cells.setdefault(run["model"], []).append(f"{p['harmful_success']:.2f} / {p['benign_accuracy']:.3f}")
        print(f"| {r['seed']} | {', '.join(cells['base'])} | {', '.join(cells['hardened'])} |")


if __name__ == "__main__":
    main()
