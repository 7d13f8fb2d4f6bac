"""benchmarks/fold_bias.py runs and measures what it says: own and perturbed against the exact step."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fold_bias.py"


def test_one_family_one_beta(capsys):
    spec = importlib.util.spec_from_file_location("fold_bias", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--families", "llama", "--betas", "1", "--threads", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["weights"], r["beta"]) for r in rows] == [("trained", 1.0), ("random", 1.0)]
    for row in rows:
        for unlearn_pass in ("own", "perturbed"):
            assert row[unlearn_pass]["cosine"] > 0.999  # fp32 forward differences against the exact step
            assert 0 < row[unlearn_pass]["error_over_sd"] < 0.1
        assert row["own"] != row["perturbed"]  # the fold changes the step, within the difference's own error
