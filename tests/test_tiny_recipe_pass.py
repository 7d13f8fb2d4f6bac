"""`protect --recipe tiny` then `verify` pass on a tiny model *trained* to a benign skill (issue 13).

The base is made by the repo's own code (``seamharden.tiny_skill``: SFT on the built-in data, harmful
answers first, refusals after), so it has a benign skill to keep and a latent harmful one an attack
can revive. The run goes through the CLI exactly as a user would. The beta 0 ablation of the same
run is run and its verdict reported beside it, whatever it is (docs/tiny_recipe.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from seamharden.attack.evaluate import response_ce
from seamharden.attack.suite import suite_data
from seamharden.data import encode_example, pad_id
from seamharden.manifest import read_manifest
from seamharden.recipe.loading import load_recipe
from seamharden.tiny_skill import (
    TinySkillConfig,
    train_tiny_skill,
    untrained_tiny_skill_model,
)

pytestmark = pytest.mark.slow


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "seamharden", *args], check=False, capture_output=True, text=True,
                          env=env)


def _config() -> TinySkillConfig:
    """The measured base (docs/tiny_recipe.md); it must hold out what the recipe's attack suite evaluates."""
    config, recipe = TinySkillConfig(), load_recipe("tiny")
    assert (config.heldout_fraction, config.split_seed) == (recipe.data.heldout_fraction, recipe.train.seed)
    return config


@pytest.fixture(scope="session")
def skilled_tiny_dir(tmp_path_factory):
    return train_tiny_skill(tmp_path_factory.mktemp("tiny-skill"), _config())


def _untrained_benign_loss() -> float:
    """The benign loss the verdict measures (suite eval records, recipe's length), before any training."""
    recipe = load_recipe("tiny")
    model, tokenizer = untrained_tiny_skill_model(_config())
    records = suite_data(recipe).eval_bgn[: recipe.attack.eval_samples]
    examples = [encode_example(tokenizer, r["prompt"], r["response"], "chat", recipe.data.max_length)
                for r in records]
    with torch.no_grad():
        return response_ce(model.eval(), examples, pad_id(tokenizer))


def test_protect_then_verify_passes_on_a_trained_tiny_model(skilled_tiny_dir, tmp_path, record_property):
    recipe = load_recipe("tiny")
    out = tmp_path / "hardened"
    proc = _cli("protect", str(skilled_tiny_dir), str(out), "--recipe", "tiny", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_manifest(out)["smoke_test"]["verdict"] == "pass", (out / "report.md").read_text()

    proc = _cli("verify", str(out), "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads(proc.stdout)
    assert payload["status"] == "pass"
    reasons, fig = payload["reasons"], payload["figures"]
    assert any(r.startswith("utility kept") for r in reasons), reasons
    assert any(r.startswith("attack effective on the base") for r in reasons), reasons
    assert any(r.startswith("hardened model resists") for r in reasons), reasons
    criteria = recipe.attack.criteria
    assert fig["base_worst_gain"] >= criteria.min_base_harm_gain
    assert fig["bounded_ratio"] <= criteria.max_bounded_harm_ratio
    assert fig["utility_drop"] <= criteria.max_utility_drop
    # The base has a skill to keep: its pre-attack benign loss is far below the untrained model's.
    untrained = _untrained_benign_loss()
    # 16 evaluation records since the accuracy budget: 1.99 vs 5.80 measured (the bound was 0.3 with 8 records)
    assert fig["base_benign_loss"] < 0.4 * untrained, (fig["base_benign_loss"], untrained)

    # The beta 0 ablation of the same run: reported, not asserted (docs/tiny_recipe.md says what it means).
    ablation = tmp_path / "beta0"
    proc = _cli("protect", str(skilled_tiny_dir), str(ablation), "--recipe", "tiny", "seam.beta=0", "--json",
                "--base-results", str(out))           # same base, grid and data: its base runs are reused
    beta0 = read_manifest(ablation)["smoke_test"]["verdict"]
    assert proc.returncode == {"pass": 0, "fail": 3, "inconclusive": 4}[beta0], proc.stderr[-3000:]
    first, second = (json.loads((d / "report.json").read_text())["results"] for d in (out, ablation))
    assert second["extra"]["base_results_reused"] is True and second["extra"]["seconds"]["base"] == 0
    assert [r for r in second["runs"] if r["model"] == "base"] == [r for r in first["runs"] if r["model"] == "base"]
    assert beta0 in {"pass", "fail", "inconclusive"}
    beta0_fig = json.loads((ablation / "report.json").read_text())["verdict"]["figures"]
    record_property("beta1_verdict", payload["status"])
    record_property("beta0_verdict", beta0)
    print(f"tiny recipe: base benign loss {fig['base_benign_loss']:.3f} (untrained {untrained:.3f}); "
          f"beta 1 {payload['status']} (ratio {fig['bounded_ratio']:.2f}); "
          f"beta 0 {beta0} (ratio {beta0_fig['bounded_ratio']})")
