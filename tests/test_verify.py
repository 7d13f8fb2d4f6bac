"""``seamharden.verify.verify`` as a library call: what it checks before any model loads, what it returns.

The attack suite itself is tested in tests/attack and end to end in tests/cli/test_attack_cmd.py; here
``run_suite`` is replaced by a recorder returning a synthetic result, so these run in milliseconds.
"""

from __future__ import annotations

import huggingface_hub.constants
import pytest

import seamharden.attack.suite
from seamharden.attack import AttackRun, EvalPoint, SuiteResult, verdict
from seamharden.errors import UserError
from seamharden.manifest import write_manifest
from seamharden.recipe.loading import dump_recipe_yaml, load_recipe, recipe_hash
from seamharden.recipe.schema import AttackConfig
from seamharden.verify import VerifyOutcome, verify


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch):
    """huggingface_hub read HF_HUB_OFFLINE at import, before conftest set it: make it true here too, so the
    Hub id ``org/base`` is never looked up (verify probes a Hub base once before loading anything)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _run(model, harmful, benign):
    points = [EvalPoint(step=5 * i, harmful_loss=h, benign_loss=b, refusal_rate=None, benign_accuracy=None)
              for i, (h, b) in enumerate(zip(harmful, benign, strict=True))]
    return AttackRun(config=AttackConfig(lr=1e-4, samples=100), model=model, points=points)


@pytest.fixture
def suite_calls(monkeypatch):
    """Replace ``run_suite`` with a recorder whose hardened model barely learns harm (a pass)."""
    calls = []

    def fake_run_suite(base, hardened, recipe, progress=None):
        calls.append({"base": base, "hardened": hardened, "recipe": recipe, "progress": progress})
        result = SuiteResult(base_model=base, hardened_model=hardened, budget="custom", runs=[
            _run("base", [3.0, 2.2, 1.5], [2.0, 2.0, 2.1]), _run("hardened", [3.2, 3.0, 2.9], [2.1, 2.1, 2.2])])
        return result, verdict(result, recipe.attack.criteria)

    monkeypatch.setattr(seamharden.attack.suite, "run_suite", fake_run_suite)
    return calls


def _protected(folder, *, recipe_name="tiny", manifest=True, recorded_hash=None):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    recipe = load_recipe(recipe_name)
    (folder / "recipe.yaml").write_text(dump_recipe_yaml(recipe), encoding="utf-8")
    if manifest:
        write_manifest(folder, base_model="org/base", base_revision=None,
                       recipe_hash=recorded_hash or recipe_hash(recipe), data_fingerprints={},
                       smoke_test={"verdict": "pass"})
    return folder


def test_outcome_of_a_protected_directory(tmp_path, suite_calls):
    folder = _protected(tmp_path / "out")
    progress = lambda *args: None  # noqa: E731
    outcome = verify(str(folder), progress=progress)
    assert isinstance(outcome, VerifyOutcome)
    assert outcome.status == "pass" == outcome.verdict.status
    assert outcome.reasons == outcome.verdict.reasons and outcome.figures["bounded_ratio"] < 0.5
    assert outcome.files_checked == 2 and outcome.manifest["base_model"] == "org/base"
    assert outcome.recorded_status is None and outcome.notes == [] and outcome.fetched is False
    assert outcome.recipe_source == "recipe.yaml" and outcome.base_model == "org/base"
    assert [r.model for r in outcome.result.runs] == ["base", "hardened"]
    [call] = suite_calls
    assert call["base"] == "org/base" and call["hardened"] == str(folder) and call["progress"] is progress
    assert call["recipe"].name == "tiny"


def test_overrides_base_and_recipe_hash_note(tmp_path, suite_calls):
    folder = _protected(tmp_path / "out", recorded_hash="sha256:other")
    outcome = verify(str(folder), recipe="default", overrides=["attack.eval_samples=3"], base="org/other")
    assert outcome.recipe_source == "default" and outcome.base_model == "org/other"
    assert suite_calls[0]["recipe"].attack.eval_samples == 3 and suite_calls[0]["base"] == "org/other"
    assert outcome.notes == ["the recipe differs from the one recorded in the manifest (recipe_hash)"]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such directory"),
    ("no_manifest", "not an output of `seamharden protect`; to attack it as a hardened model anyway, "
                    "pass --base BASE$"),
    ("no_manifest_no_recipe", r"pass --base BASE and --recipe NAME\|PATH$"),
    ("not_a_model", r"neither an output of `seamharden protect` \(no seamharden.json\) nor a model directory"),
    ("tampered", "changed: model.safetensors"),
    ("no_recipe", "pass --recipe"),
    ("bad_report", "is not a valid seamharden report"),
])
def test_problems_are_user_errors_before_the_suite(tmp_path, suite_calls, case, message):
    folder = tmp_path / "out"
    if case != "missing":
        _protected(folder, manifest=not case.startswith(("no_manifest", "not_a_model")))
    if case.startswith("no_manifest"):
        (folder / "config.json").write_text("{}")
    if case == "no_manifest_no_recipe":
        (folder / "recipe.yaml").unlink()
    if case == "tampered":
        (folder / "model.safetensors").write_bytes(b"weightz")
    if case == "no_recipe":
        (folder / "recipe.yaml").unlink()
        write_manifest(folder, base_model="org/base", base_revision=None, recipe_hash="x", data_fingerprints={},
                       smoke_test=None)
    if case == "bad_report":
        (folder / "report.json").write_text("{}")
    with pytest.raises(UserError, match=message):
        verify(str(folder))
    assert suite_calls == []


def test_a_not_output_directory_gets_one_correct_hint(tmp_path, suite_calls):
    """Issue 17 item 7: following the one hint (both options) runs the suite, with no further hint."""
    folder = _protected(tmp_path / "out", manifest=False)
    (folder / "config.json").write_text("{}")
    (folder / "recipe.yaml").unlink()
    with pytest.raises(UserError, match="pass --base BASE and --recipe NAME"):
        verify(str(folder))
    outcome = verify(str(folder), base="org/base", recipe="tiny")
    assert outcome.status == "pass" and suite_calls[0]["base"] == "org/base"


def test_a_local_base_is_checked_before_the_suite(tmp_path, suite_calls):
    folder = _protected(tmp_path / "out")
    with pytest.raises(UserError, match="no such directory"):
        verify(str(folder), base=str(tmp_path / "gone"))
    with pytest.raises(UserError, match="whose path is not published; pass --base"):
        verify(str(folder), base="a local model (config sha256 0123456789ab)")
    assert suite_calls == []
