import pytest

from seamharden.recipe.loading import dump_recipe_yaml, list_recipes, load_recipe, recipe_path
from seamharden.recipe.schema import Recipe

EXPECTED = {"default", "llama2-7b-chat", "llama2-13b-chat", "llama2-70b-chat", "lora", "tiny", "toy",
            "smollm2-135m-cpu"}


def test_all_expected_recipes_ship():
    assert EXPECTED <= set(list_recipes())


@pytest.mark.parametrize("name", list_recipes())
def test_packaged_recipe_validates_and_names_itself(name):
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe.description
    assert Recipe.model_validate(recipe.model_dump()) == recipe


@pytest.mark.parametrize("name", list_recipes())
def test_every_key_line_is_commented(name):
    for line in recipe_path(name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"{name}: uncommented line {line!r}"


def test_default_has_paper_settings():
    r = load_recipe("default")
    assert (r.seam.alpha, r.seam.beta, r.train.lr) == (1.0, 0.01, 2e-5)
    assert (r.train.scheduler, r.train.warmup_ratio, r.train.batch_size) == ("cosine", 0.1, 4)
    assert r.data.max_length == 256 and r.model.gradient_checkpointing and r.model.dtype == "auto"
    train_samples = round(r.data.adv.max_samples * (1 - r.data.heldout_fraction))
    assert train_samples == 8000 and r.train.steps * r.train.batch_size == train_samples
    assert (r.data.adv.kind, r.data.adv.path, r.data.adv.split) == ("hub", "PKU-Alignment/BeaverTails", "30k_train")
    assert r.data.adv.where == {"is_safe": False}
    assert r.data.aln.path == r.data.adv.path and r.data.aln_refusals == "templates"
    assert r.data.bgn.path == "tatsu-lab/alpaca"
    assert (r.data.bgn.columns.prompt, r.data.bgn.columns.input, r.data.bgn.columns.response) == (
        "instruction", "input", "output")


def test_llama2_fits_one_gpu_settings():
    r = load_recipe("llama2-7b-chat")
    assert (r.model.dtype, r.model.gradient_checkpointing, r.train.optimizer) == ("bfloat16", True, "adamw8bit")
    assert r.data == load_recipe("default").data


def test_multi_gpu_recipes_assume_their_gpu_count():
    for name, gpus in (("llama2-13b-chat", 4), ("llama2-70b-chat", 16)):
        r = load_recipe(name)
        assert r.distributed.world_size == gpus and r.seam.difference != "hvp"
        assert r.train.batch_size >= gpus and r.model.dtype == "bfloat16" and r.model.gradient_checkpointing


def test_lora_and_tiny():
    lora = load_recipe("lora")
    assert lora.model.lora is not None and lora.model.lora.merge_on_save and lora.train.lr > 2e-5
    tiny = load_recipe("tiny")
    assert {tiny.data.adv.kind, tiny.data.aln.kind, tiny.data.bgn.kind} == {"builtin"}
    # 100 steps: what the trained tiny model needs for a passing verdict (docs/tiny_recipe.md); still about 30 s
    assert tiny.model.dtype == "float32" and tiny.train.steps <= 100 and tiny.attack.budget == "custom"
    assert all(a.steps is not None and a.steps <= 20 for a in tiny.attack.attacks)
    assert tiny.train.checkpoint_every < tiny.train.steps


@pytest.mark.parametrize("name", list_recipes())
def test_dump_round_trips(name, tmp_path):
    recipe = load_recipe(name)
    path = tmp_path / "r.yaml"
    path.write_text(dump_recipe_yaml(recipe))
    assert load_recipe(str(path)) == recipe


def test_docs_list_every_key():
    from pathlib import Path

    from pydantic import BaseModel

    docs = (Path(__file__).parents[2] / "docs" / "recipes.md").read_text()
    sections = {"": Recipe}
    while sections:
        prefix, model = sections.popitem()
        for name, field in model.model_fields.items():
            assert f"`{prefix}{name}`" in docs, f"docs/recipes.md lacks {prefix}{name}"
            inner = [a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                     if isinstance(a, type) and issubclass(a, BaseModel)]
            for sub in inner:
                sections[_doc_prefix(prefix + name)] = sub


def _doc_prefix(path):
    data_sources = ("data.adv", "data.aln", "data.bgn", "utility.val", "utility.anchor_data", "attack.data.attack_adv",
                    "attack.data.attack_bgn", "attack.data.eval_adv", "attack.data.eval_bgn")
    for stream in data_sources:  # every data source is documented once, as data.<stream>
        path = path.replace(stream, "data.<stream>")
    return path.replace("attack.attacks", "attack.attacks.<i>") + "."
