"""``seamharden protect``: from a model id to a hardened model directory.

The output directory is complete only once ``seamharden.json`` (the manifest, written
last) exists. While a run is going, the directory holds ``run.json`` (what is being
made), ``checkpoints/`` and ``metrics.jsonl``; ``--resume`` continues from there.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from seamharden.cpu_memory import keep_freed_memory
from seamharden.data.formatting import encode_prompt
from seamharden.data.seam_data import build_seam_data
from seamharden.distributed.runtime import barrier, current_world
from seamharden.distributed.sharded import SHARDING, decoder_layers, full_state_dict
from seamharden.errors import ExitCode, UserError
from seamharden.manifest import MANIFEST, file_mode, write_manifest
from seamharden.modeling import (
    attach_lora,
    check_model_reference,
    count_parameters,
    default_device,
    load_model,
    resolve_dtype,
    resolve_model_reference,
)
from seamharden.recipe.loading import RESUMABLE_CHANGES, dump_recipe_yaml, recipe_hash, resumable_hash
from seamharden.recipe.memory import estimate_attack_memory, estimate_memory
from seamharden.recipe.schema import Recipe
from seamharden.report.card import write_unverified_card
from seamharden.train import checkpoint, loop
from seamharden.train.utility import UtilityController, reference_mode

RUN_STATE = "run.json"
RECIPE_FILE = "recipe.yaml"


SmokeTest = Callable[[str, Path, Recipe, dict], dict]
"""``(base, out_dir, recipe, hardening) -> {"ran", "verdict"}``; ``hardening`` is ``hardening_summary``'s dict."""


@dataclass
class ProtectOutcome:
    out_dir: Path
    finished: bool
    steps_done: int
    smoke_test: dict | None
    hardening: dict | None = None


def run_smoke_test(base: str, out_dir: Path, recipe: Recipe, hardening: dict, base_results=None,
                   progress=None) -> dict:
    """The default smoke test: the recipe's attack suite on base and hardened, the report into ``out_dir``.

    The hardening summary (steps, the kept step of the utility controller) goes into
    report.json's ``results.extra.hardening``. ``base_results`` (a ``SuiteResult`` checked by
    ``load_base_results``) stands in for attacking the base again. ``progress(description, done,
    total)`` is ``run_suite``'s live-view callback. Returns the manifest's smoke-test summary.
    """
    from seamharden.attack.suite import run_suite
    from seamharden.report import write_report

    result, verdict = run_suite(base, str(out_dir), recipe, base_results=base_results, progress=progress)
    result.extra["hardening"] = dict(hardening)
    write_report(result, verdict, out_dir, title=f"{out_dir.name}: SEAM robustness report",
                 base_model=base, recipe_name=recipe.name)
    return {"ran": True, "verdict": verdict.status}


def load_base_results(path: str | Path, recipe: Recipe):
    """The base side of an earlier ``report.json`` (from ``protect`` or ``seamharden attack``), checked
    against ``recipe``'s grid, data and evaluation settings before any model loads (UserError if not)."""
    from pydantic import ValidationError

    from seamharden.attack.evalset import EvalSettings
    from seamharden.attack.grid import attack_grid
    from seamharden.attack.suite import reused_base_controls, reused_base_side, suite_controls, suite_data
    from seamharden.report.json_io import load_report

    if recipe.attack.budget == "sweep":
        raise UserError("attack.budget=sweep searches the base anew: earlier base results cannot stand in")
    try:
        previous = load_report(path).results
    except (OSError, ValueError, ValidationError) as exc:
        raise UserError(f"cannot read base results {Path(path).name}: {type(exc).__name__}") from exc
    grid, data = attack_grid(recipe.attack), suite_data(recipe)
    reused_base_side(previous, grid, data, EvalSettings.from_section(recipe.attack), gradients=True)
    reused_base_controls(previous, suite_controls(recipe, grid, data))
    return previous


def estimator_summary(recipe: Recipe, metrics_path: Path) -> dict:
    """The L_sd estimator used and its self-check over the run's steps (from ``metrics.jsonl``).

    ``failed_steps`` counts steps whose ``estimate_consistency`` exceeds the threshold of
    ``seamharden.core.estimator.consistency_passes`` (docs/method.md); null rows (exact ``hvp``,
    an unchecked difference, beta 0; NaN in runs written before) are not checked. ``unlearn_pass``
    only where grad L_ul was taken in the perturbed pass (``seam.unlearn_pass=perturbed``).
    """
    from seamharden.core.estimator import CONSISTENCY_THRESHOLD, consistency_passes

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line] if metrics_path.exists() else []
    values = [(r["step"], math.nan if r.get("estimate_consistency") is None else float(r["estimate_consistency"]))
              for r in rows]  # null (NaN before issue 17): not checked
    checked = [(step, value) for step, value in values if consistency_passes(value) is not None]
    failed = [step for step, value in checked if not consistency_passes(value)]
    summary = {"difference": recipe.seam.difference, "self_check": recipe.seam.self_check,
               "threshold": CONSISTENCY_THRESHOLD, "checked_steps": len(checked), "failed_steps": len(failed),
               "first_failed_step": failed[0] if failed else None,
               "worst_consistency": max((v for _, v in checked), default=None)}
    if recipe.seam.unlearn_pass != "own":  # absent: grad L_ul at theta, from its own backward
        summary["unlearn_pass"] = recipe.seam.unlearn_pass
    return summary


def hardening_summary(recipe: Recipe, outcome: loop.TrainOutcome, out_dir: Path) -> dict:
    """What the run did, for run.json, the manifest and the report: steps, the estimator's self-check
    and the utility budget."""
    summary: dict = {"steps": outcome.steps_done, "anchor": recipe.utility.anchor,
                     "estimator": estimator_summary(recipe, out_dir / loop.METRICS)}
    if recipe.seam.beta_delay and recipe.seam.beta:  # a delay of a beta that is 0 (the ablation) delays nothing
        summary["beta_delay"] = recipe.seam.beta_delay
    if recipe.seam.delay_restart:
        summary["delay_restart"] = recipe.seam.beta_delay  # the step the run started afresh at
    if recipe.utility.controller:
        summary |= {"kept_step": outcome.kept_step, "utility_metric": recipe.utility.metric,
                    "utility_start": outcome.val_start, "utility_tolerance": recipe.utility.tolerance}
    return summary


def default_output_dir(model_ref: str) -> Path:
    """``./<model name>-seam``: a local model's resolved directory name (``.`` included), a Hub id's last part."""
    local = Path(model_ref).expanduser()
    name = local.resolve().name if local.exists() else Path(model_ref.rstrip("/")).name
    return Path(name + "-seam")


def check_output_path(out_dir: Path) -> None:
    """Fail before anything loads when ``out_dir`` is a file or could not be created (a parent is a file,
    not writable, or a dangling link). Writes nothing."""
    if out_dir.is_symlink() and not out_dir.exists():
        raise UserError(f"output directory {out_dir} is a broken symbolic link")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UserError(f"output directory {out_dir} is a file; choose a directory")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise UserError(f"output directory {out_dir} is not writable")
        return
    parent = out_dir.absolute().parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot create output directory {out_dir}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot create output directory {out_dir}: {parent} is not writable")


def prepare_output_dir(out_dir: Path, model_ref: str, rhash: str, resume: bool,
                       resumable_hash: str | None = None, recipe: Recipe | None = None) -> dict | None:
    """Refuse to overwrite a finished or foreign directory; returns the run state when resuming.

    A resume must use the run's model and recipe; only the keys of ``RESUMABLE_CHANGES``
    (``train.lr``) may differ, checked by ``resumable_hash`` against the one run.json recorded.
    ``model_ref`` as ``resolve_model_reference`` gives it; a refused resume names the model, or the
    keys of ``recipe`` (the recipe as run) that differ from the one run.json recorded.
    Writes nothing: the directory is created only once the model and data have loaded.
    """
    check_output_path(out_dir)
    state_path = out_dir / RUN_STATE
    if (out_dir / MANIFEST).exists():
        raise UserError(f"{out_dir} already holds a finished hardened model; choose another output directory")
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if not resume:
            raise UserError(f"{out_dir} holds an unfinished run; continue it with --resume or choose another directory")
        if resolve_model_reference(state.get("model") or "") != model_ref:
            raise UserError(f"cannot resume {out_dir}: {resume_mismatch(state, model_ref, recipe)}")
        if state.get("recipe_hash") != rhash and (
                resumable_hash is None or state.get("resumable_hash") != resumable_hash):
            raise UserError(f"cannot resume {out_dir}: {resume_mismatch(state, model_ref, recipe)} (only "
                            f"{', '.join(RESUMABLE_CHANGES)} may change on --resume)")
        if state.get("recipe_hash") != rhash and state.get("stage") == "trained":
            raise UserError(f"cannot resume {out_dir} with another train.lr: its training is finished "
                            f"(train.lr={state.get('lr')}); only the smoke test is left")
        return state
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir} exists and is not empty; choose another output directory")
    return None


def check_data_sizes(recipe: Recipe, smoke_test: bool) -> None:
    """D_adv / D_bgn large enough for the held-out split the smoke test and ``verify`` attack with,
    checked before any model loads (only the records are read)."""
    if recipe.attack.data is not None:
        return
    from seamharden.attack.suite import suite_data

    try:
        suite_data(recipe)
    except UserError as err:
        if smoke_test:
            raise
        raise UserError(f"{err} (with --no-smoke-test too: no smoke test or `seamharden verify` could ever run "
                        "on the hardened model)") from None


def check_device_dtype(recipe: Recipe, device: torch.device) -> None:
    """float16 on a CPU is refused: the tiny recipe's losses are NaN by step 2 there (issue 17)."""
    if recipe.model.dtype == "float16" and device.type == "cpu":
        raise UserError("model.dtype=float16 cannot train on a CPU (NaN within a few steps); use float32 "
                        "(or bfloat16)")


def _lr_changes(state: dict | None, recipe: Recipe, out_dir: Path) -> list[dict]:
    """The run's peak-lr changes on --resume: ``[{"from_step", "lr", "was"}]``, this one appended."""
    if state is None:
        return []
    changes = list(state.get("lr_changes", []))
    was = state.get("lr", recipe.train.lr)
    if was != recipe.train.lr and state.get("stage") != "trained":
        found = checkpoint.latest(out_dir / loop.CHECKPOINTS)
        step = int(found.name[len(checkpoint.PREFIX):]) if found else 0
        changes.append({"from_step": step, "lr": recipe.train.lr, "was": was})
    return changes


def resume_mismatch(state: dict, model_ref: str, recipe: Recipe | None) -> str:
    """Why a run cannot be resumed: the model it started with, else the recipe keys that differ (named
    when run.json records the recipe it started with), else that the recipe hash differs."""
    if resolve_model_reference(state.get("model") or "") != model_ref:
        return f"it was started with the model {state.get('model')}, not {model_ref}"
    started = state.get("recipe")
    keys = _differing_keys(started, recipe.model_dump(mode="json")) if isinstance(started, dict) and recipe else []
    if keys:
        return f"the recipe differs from the one it was started with in {', '.join(keys[:8])}"
    return "the recipe differs from the one it was started with (recipe_hash; this run.json does not say where)"


def _differing_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differing_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}")
    return out


def _write_state(out_dir: Path, state: dict) -> None:
    tmp = out_dir / (RUN_STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(out_dir / RUN_STATE)


def _check_same_inputs(state: dict | None, fingerprints: dict, commit: str | None) -> None:
    """A resumed run must see the data and model weights the run started with."""
    if state is None or "data_fingerprints" not in state:
        return
    if state["data_fingerprints"] != fingerprints:
        changed = sorted(k for k in fingerprints if state["data_fingerprints"].get(k) != fingerprints[k])
        raise UserError(f"cannot resume: the data changed since the run started ({', '.join(changed)})")
    if state.get("model_commit") != commit:
        raise UserError("cannot resume: the model's Hub revision changed since the run started; pin model.revision")


def with_model(recipe: Recipe, model_ref: str) -> Recipe:
    """The recipe as run: ``model.name_or_path`` set to the MODEL argument (recorded in recipe.yaml)."""
    return recipe.model_copy(update={"model": recipe.model.model_copy(update={"name_or_path": model_ref})})


def dry_run_plan(model_ref: str, recipe: Recipe) -> dict:
    """Resolved recipe and a memory estimate, from the model's config alone (no weights loaded)."""
    recipe = with_model(recipe, model_ref)
    check_model_reference(model_ref)
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    shipped = shipped_config(model_ref)
    try:
        config = AutoConfig.from_pretrained(shipped or model_ref, revision=None if shipped else recipe.model.revision,
                                            trust_remote_code=recipe.model.trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the config of {model_ref}: {str(err).splitlines()[0]}") from err
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=recipe.model.trust_remote_code)
        model = attach_lora(model, recipe.model)
    total, trainable = count_parameters(model)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    device = default_device()
    dtype = str(resolve_dtype(recipe.model.dtype, device)).removeprefix("torch.")
    reference = reference_mode(recipe.utility, recipe.model.lora is not None) if recipe.utility.anchor > 0 else None
    if reference is not None and recipe.seam.delay_restart:
        reference = "copy"  # the restart takes a frozen copy of the weights it starts from, LoRA or not
    world_size = recipe.distributed.world_size
    root = total - sum(p.numel() for layer in decoder_layers(model) for p in layer.parameters()) \
        if world_size > 1 else 0
    memory = estimate_memory(
        total, trainable, dtype, recipe.train.optimizer, recipe.model.gradient_checkpointing,
        recipe.train.batch_size, recipe.data.max_length, text.hidden_size, text.num_hidden_layers,
        reference_copy=reference == "copy", kept_copies=recipe.utility.controller,
        world_size=world_size, root_params=root,
        hvp_graph=recipe.seam.hvp_graph if recipe.seam.difference == "hvp" and recipe.seam.beta != 0 else None,
    )
    full_attacks = [a for a in recipe.attack.attacks if a.method == "full"]
    attack_memory = estimate_attack_memory(
        total, dtype, "adamw" if any(a.optimizer == "adamw" for a in full_attacks) or not full_attacks else "sgd",
        recipe.model.gradient_checkpointing, max((a.batch_size for a in full_attacks), default=4),
        recipe.data.max_length, text.hidden_size, text.num_hidden_layers, world_size=world_size, root_params=root,
    )
    return {"model": model_ref, "parameters": total, "trainable_parameters": trainable,
            "recipe_hash": recipe_hash(recipe), "memory_bytes": memory, "dtype": dtype, "device": device.type,
            "anchor_reference": reference, "world_size": world_size, "attack_memory_bytes": attack_memory,
            "config_source": "shipped" if shipped else "model"}


SHIPPED_CONFIGS = Path(__file__).parent / "recipes" / "configs"
"""Model configs (config.json only, no weights) of the models packaged recipes name, so that
``--dry-run`` estimates their memory offline: one directory per Hub id, ``org--name``."""


def shipped_config(model_ref: str) -> str | None:
    """The shipped config directory for Hub id ``model_ref`` (e.g. meta-llama/Llama-2-70b-chat-hf), or None."""
    if model_ref.count("/") != 1:
        return None
    path = SHIPPED_CONFIGS / model_ref.replace("/", "--")
    return str(path) if (path / "config.json").is_file() else None


def validation_score(recipe: Recipe, tokenizer, records: list[dict], template: str):
    """The utility controller's score on the defender's validation records (``recipe.utility.metric``).

    ``loss``: token-mean response cross-entropy; ``exact_match``: share of greedy answers equal
    to the record's response. Both under ``no_grad`` in eval mode (the train mode is restored).
    """
    from seamharden.attack.scorers import exact_match_rate, generate_answers, response_ce
    from seamharden.data import encode_example, encode_prompt, pad_id

    section = recipe.utility
    records = records[: section.val_samples]
    pad = pad_id(tokenizer)
    if section.metric == "loss":
        examples = [encode_example(tokenizer, r["prompt"], r["response"], template, recipe.data.max_length)
                    for r in records]
    else:
        prompts = [encode_prompt(tokenizer, r["prompt"], template)[-(recipe.data.max_length - 1):] for r in records]
        answers = [r["response"] for r in records]

    def score(model) -> float:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if section.metric == "loss":
                    return response_ce(model, examples, pad)
                outs = generate_answers(model, tokenizer, prompts, pad, section.max_new_tokens, batch_size=64)
                return exact_match_rate(outs, answers)
        finally:
            model.train(was_training)

    return score


def _refusal_generator(model, tokenizer, template: str) -> Callable[[list[str]], list[str]]:
    """The model's own answers to prompts (greedy), for ``data.aln_refusals=generate``."""

    @torch.no_grad()
    def generate(prompts: list[str]) -> list[str]:
        model.eval()
        answers = []
        for prompt in prompts:
            ids = torch.tensor([encode_prompt(tokenizer, prompt, template)], device=model.device)
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
        model.train()
        return answers

    return generate


def save_hardened(model, tokenizer, recipe: Recipe, out_dir: Path, state_dict: dict | None = None) -> None:
    """Model (LoRA merged when asked), tokenizer and resolved recipe, as safetensors.

    ``state_dict``: the full weights to write instead of the model's own (a sharded model's, gathered).
    """
    if recipe.model.lora is not None and recipe.model.lora.merge_on_save:
        model = model.merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(out_dir)
    (out_dir / RECIPE_FILE).write_text(dump_recipe_yaml(recipe))
    mode = file_mode()  # transformers writes the weights through a 0600 temporary file
    for path in out_dir.iterdir():
        if path.is_file() and path.suffix in (".safetensors", ".json"):
            path.chmod(mode)


def check_recipe_for_protect(recipe: Recipe, smoke_test: bool) -> None:
    """Combinations that would fail only after training, refused before it starts."""
    lora = recipe.model.lora
    if smoke_test and lora is not None and not lora.merge_on_save:
        raise UserError("model.lora.merge_on_save=false saves only the adapters, which the smoke test cannot "
                        "load; set it to true or pass --no-smoke-test")
    loop.check_world(recipe, current_world())
    if recipe.distributed.world_size > 1:
        check_sharded_run(recipe, smoke_test)


def check_sharded_run(recipe: Recipe, smoke_test: bool) -> None:
    """What ``protect`` under torchrun does not run yet (docs/distributed.md), refused before any model loads.

    Not schema rules: ``--dry-run`` still estimates the memory of such a recipe on N GPUs.
    """
    unsupported = [
        (smoke_test, "the smoke test", "pass --no-smoke-test, then run `seamharden verify` on the output "
                                       "directory in one process"),
        (recipe.model.lora is not None, "LoRA", "set model.lora=null"),
        (recipe.utility.controller and recipe.utility.metric != "loss",
         f"the utility controller with utility.metric={recipe.utility.metric}",
         "set utility.metric=loss or utility.check_every=0"),
        (recipe.train.optimizer != "adamw", "an 8-bit optimizer", "set train.optimizer=adamw"),
    ]
    for bad, what, fix in unsupported:
        if bad:
            raise UserError(f"{what} does not run under torchrun yet (distributed.world_size="
                            f"{recipe.distributed.world_size}); {fix}")


def protect(
    model_ref: str,
    out_dir: Path,
    recipe: Recipe,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    smoke_test: SmokeTest | None = run_smoke_test,
    on_step: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_stage: Callable[[str], None] | None = None,
    device: torch.device | None = None,
) -> ProtectOutcome:
    """Harden ``model_ref`` into ``out_dir``, then run ``smoke_test`` (default: the attack suite; None: skip).

    Stages, recorded in ``run.json``: ``training`` (checkpoints under ``checkpoints/``), then
    ``trained`` (model saved; a resume goes straight to the smoke test), then the manifest.
    ``on_stage`` is told "loading", "training", "saving" and "smoke-test" as they begin.

    Under torchrun (a process group of ``recipe.distributed.world_size`` ranks) every rank calls this:
    each loads the model on the CPU, ``loop.train`` shards it, rank 0 alone writes the directory's files
    and the full model (gathered once); there is no smoke test (``check_sharded_run``).
    """
    stage = on_stage or (lambda name: None)
    world = current_world()
    check_model_reference(model_ref)
    model_ref = resolve_model_reference(model_ref)  # a local base by its absolute path: verify from anywhere
    recipe = with_model(recipe, model_ref)
    rhash, rest_hash = recipe_hash(recipe), resumable_hash(recipe)
    check_recipe_for_protect(recipe, smoke_test is not None)
    check_device_dtype(recipe, device or default_device())
    if not world.distributed and (device or default_device()).type == "cpu":
        keep_freed_memory()  # every step's large temporaries stay mapped (seamharden.cpu_memory)
    state = prepare_output_dir(out_dir, model_ref, rhash, resume, rest_hash, recipe)
    check_data_sizes(recipe, smoke_test is not None)
    lr_changes = _lr_changes(state, recipe, out_dir)

    if state is not None and state.get("stage") == "trained":
        fingerprints, hardening = state["data_fingerprints"], state["hardening"]
    else:
        stage("loading")
        if world.distributed:  # on the CPU, sharded onto the devices by loop.train; auto: the device's dtype
            section = recipe.model.model_copy(update={"dtype": str(resolve_dtype(
                recipe.model.dtype, device or default_device())).removeprefix("torch.")})
            loaded = load_model(model_ref, section, torch.device("cpu"))
        else:
            loaded = load_model(model_ref, recipe.model, device)
        model = attach_lora(loaded.model, recipe.model)
        generate = None
        if recipe.data.aln_refusals == "generate":
            generate = _refusal_generator(model, loaded.tokenizer, recipe.data.template)
        data = build_seam_data(recipe.data, loaded.tokenizer, recipe.train.batch_size, recipe.train.seed, generate,
                               val=recipe.utility.val,
                               val_samples=recipe.utility.val_samples if recipe.utility.controller else 0,
                               anchor_data=recipe.utility.anchor_data)
        _check_same_inputs(state, data.fingerprints, loaded.commit)
        fingerprints = data.fingerprints
        run = {"model": model_ref, "recipe_hash": rhash, "resumable_hash": rest_hash, "lr": recipe.train.lr,
               "data_fingerprints": fingerprints, "model_commit": loaded.commit,
               "recipe": recipe.model_dump(mode="json")} | ({"lr_changes": lr_changes} if lr_changes else {})
        barrier(world)  # every rank has checked the directory before rank 0 writes into it
        if world.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_state(out_dir, {**run, "stage": "training"})
        barrier(world)
        stage("training")
        score = validation_score(recipe, loaded.tokenizer, data.val_bgn, data.template) \
            if recipe.utility.controller else None
        outcome = loop.train(model, data, recipe, out_dir, resume=resume, stop_after=stop_after, on_step=on_step,
                             should_stop=should_stop, score=score)
        if not outcome.finished:
            return ProtectOutcome(out_dir, False, outcome.steps_done, None)
        stage("saving")
        full = full_state_dict(model) if world.distributed else None  # collective: every rank
        hardening = hardening_summary(recipe, outcome, out_dir) | ({"lr_changes": lr_changes} if lr_changes else {})
        if world.distributed:
            hardening["distributed"] = {"world_size": world.size, "sharding": SHARDING}
        if world.is_main:
            save_hardened(model, loaded.tokenizer, recipe, out_dir, state_dict=full)
            _write_state(out_dir, {**run, "stage": "trained", "hardening": hardening})
        del model, loaded, data, full
        barrier(world)
    if world.is_main:  # rank 0 finishes the directory alone; the others wait for it
        summary = _finish(model_ref, out_dir, recipe, rhash, fingerprints, hardening, smoke_test, stage)
    barrier(world)
    return ProtectOutcome(out_dir, True, hardening["steps"], summary if world.is_main else None, hardening)


def _finish(model_ref: str, out_dir: Path, recipe: Recipe, rhash: str, fingerprints: dict, hardening: dict,
            smoke_test: SmokeTest | None, stage: Callable[[str], None]) -> dict:
    """After the model is saved: the smoke test (or the unverified card), then the manifest; its summary."""
    UtilityController.discard(out_dir)
    if smoke_test is not None:
        stage("smoke-test")
        try:
            summary = smoke_test(model_ref, out_dir, recipe, hardening)
        except KeyboardInterrupt:
            raise UserError(f"interrupted during the smoke test; the hardened model is saved in {out_dir}; "
                            "finish with --resume", ExitCode.INTERRUPTED) from None
    else:
        write_unverified_card(out_dir, base_model=model_ref, recipe_name=recipe.name)
        summary = {"ran": False, "verdict": None}
    shutil.rmtree(out_dir / loop.CHECKPOINTS, ignore_errors=True)
    (out_dir / RUN_STATE).unlink()
    write_manifest(
        out_dir, base_model=model_ref, base_revision=recipe.model.revision, recipe_hash=rhash,
        data_fingerprints=fingerprints, smoke_test=summary,
        extra={**hardening, "recipe": recipe.name},
    )
    return summary
