"""Model references (issue 17 item 5): a local base is recorded by its absolute path, however it was typed.

``verify`` from another directory finds it; ``--resume`` with ``./tiny-llama/`` or ``./tiny-llama``
is the same run; a refused resume says whether the model or which recipe key differs. What ``push``
publishes names a local base without any path (tests/hub/test_publish.py).
"""

from __future__ import annotations

import json
import shutil

import huggingface_hub.constants
import pytest

import seamharden.attack.suite
from seamharden.attack import SuiteResult, verdict
from seamharden.errors import UserError
from seamharden.manifest import read_manifest
from seamharden.protect import RUN_STATE, prepare_output_dir, protect
from seamharden.recipe.loading import load_recipe, recipe_hash
from seamharden.references import (
    LOCAL_MODEL,
    config_sha256,
    public_model_reference,
    resolve_model_reference,
)
from seamharden.verify import verify

FAST = ["train.steps=2", "train.checkpoint_every=1", "data.max_length=48"]


@pytest.fixture
def in_workdir(tmp_path, tiny_llama_dir, monkeypatch):
    """A working directory holding ``tiny-llama`` (a copy of the tiny model), as a user would have it."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_llama_dir, work / "tiny-llama")
    monkeypatch.chdir(work)
    return work


def test_spellings_of_one_directory_resolve_alike(in_workdir):
    absolute = str(in_workdir.resolve() / "tiny-llama")
    for typed in ("./tiny-llama/", "./tiny-llama", "tiny-llama", absolute + "/"):
        assert resolve_model_reference(typed) == absolute
    assert resolve_model_reference("org/name") == "org/name" and resolve_model_reference("gpt2") == "gpt2"


def test_public_reference_names_no_path(in_workdir):
    public = public_model_reference("./tiny-llama")
    assert public == f"{LOCAL_MODEL} (config sha256 {config_sha256(in_workdir / 'tiny-llama')[:12]})"
    assert "/" not in public and "tiny-llama" not in public
    assert public_model_reference("org/name") == "org/name"
    assert public_model_reference("./gone/model") == LOCAL_MODEL


def test_protect_records_an_absolute_base_and_verify_finds_it_from_elsewhere(in_workdir, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = in_workdir / "out"
    protect("./tiny-llama/", out, load_recipe("tiny", FAST), smoke_test=None)
    absolute = str(in_workdir.resolve() / "tiny-llama")
    assert read_manifest(out)["base_model"] == absolute
    assert load_recipe(str(out / "recipe.yaml")).model.name_or_path == absolute

    calls = []

    def fake_run_suite(base, hardened, recipe, progress=None):
        calls.append(base)
        result = SuiteResult(base_model=base, hardened_model=hardened, budget="custom", runs=[])
        return result, verdict(result, recipe.attack.criteria)

    monkeypatch.setattr(seamharden.attack.suite, "run_suite", fake_run_suite)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    verify(str(out))
    assert calls == [absolute]


def _started(out, model, recipe):
    out.mkdir()
    recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"name_or_path": model})})
    (out / RUN_STATE).write_text(json.dumps(
        {"model": model, "recipe_hash": recipe_hash(recipe), "recipe": recipe.model_dump(mode="json"),
         "stage": "training"}))
    return recipe


def test_a_refused_resume_says_what_differs(in_workdir, tiny_llama_dir):
    recipe = load_recipe("tiny", FAST)
    model_ref = resolve_model_reference("./tiny-llama")
    started = _started(in_workdir / "out", model_ref, recipe)
    other = str(tiny_llama_dir.resolve())
    with pytest.raises(UserError, match=f"started with the model {model_ref}, not {other}"):
        prepare_output_dir(in_workdir / "out", other, recipe_hash(started), True, recipe=started)
    changed = load_recipe("tiny", [*FAST, "train.lr=0.5", "seam.beta=0.25"])
    changed = changed.model_copy(update={"model": changed.model.model_copy(update={"name_or_path": model_ref})})
    with pytest.raises(UserError, match=r"recipe differs from the one it was started with in seam.beta, train.lr "
                                        r"\(only train.lr may change on --resume\)$"):
        prepare_output_dir(in_workdir / "out", model_ref, recipe_hash(changed), True, recipe=changed)


def test_resume_through_protect_with_another_spelling(in_workdir, monkeypatch):
    """The whole path: stop after one step typed one way, resume typed the other way."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    recipe = load_recipe("tiny", FAST)
    out = in_workdir / "out"
    first = protect("./tiny-llama", out, recipe, stop_after=1, smoke_test=None)
    assert not first.finished
    second = protect("./tiny-llama/", out, recipe, resume=True, smoke_test=None)
    assert second.finished and second.steps_done == 2
