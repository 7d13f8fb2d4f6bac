import pytest

from seamharden.errors import UserError
from seamharden.recipe.loading import dump_recipe_yaml, load_recipe, recipe_hash, recipe_path


def _error(*args) -> str:
    with pytest.raises(UserError) as info:
        load_recipe(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_overrides_beat_yaml():
    r = load_recipe("tiny", ["train.lr=1e-4", "seam.beta=0", "attack.criteria.utility_floor=3"])
    assert r.train.lr == 1e-4 and r.seam.beta == 0 and r.attack.criteria.utility_floor == 3.0


def test_later_override_wins():
    assert load_recipe("tiny", ["train.steps=3", "train.steps=7"]).train.steps == 7


def test_list_and_mapping_values():
    r = load_recipe("tiny", ["model.lora.target_modules=[q_proj, v_proj]", "data.bgn.where={lang: en}"])
    assert r.model.lora.target_modules == ["q_proj", "v_proj"]
    assert r.data.bgn.where == {"lang": "en"}


def test_override_creates_none_section():
    r = load_recipe("tiny", ["model.lora.r=8"])
    assert r.model.lora is not None and r.model.lora.r == 8 and r.model.lora.alpha == 32.0


def test_override_to_null_and_list_item():
    r = load_recipe("lora", ["model.lora=null", "model.revision=", "attack.budget=custom",
                             "attack.attacks=[{lr: 1e-5, samples: 8}]", "attack.attacks.0.lr=2e-5"])
    assert r.model.lora is None and r.model.revision is None
    assert r.attack.attacks[0].lr == 2e-5


def test_numbers_for_strings_and_exponent_floats(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  lr: 3e-4\nmodel:\n  revision: 1234\n")
    r = load_recipe(str(path))
    assert r.train.lr == 3e-4 and r.model.revision == "1234" and r.name == "r"


def test_all_errors_in_one_line():
    message = _error("tiny", ["train.lr=-1", "train.bogus=1", "model.dtype=fp8", "train.steps=abc"])
    assert message.startswith("recipe tiny: ")
    for part in ("train.lr: Input should be greater than 0", "train.bogus: unknown key", "model.dtype:",
                 "train.steps:"):
        assert part in message
    assert message.count(";") == 3


def test_unknown_key_suggests():
    assert "seam.betta: unknown key (did you mean 'beta'?)" in _error("tiny", ["seam.betta=1"])


def test_union_alternatives_joined():
    message = _error("tiny", ["model.lora.target_modules=5"])
    assert "model.lora.target_modules: Input should be a valid list or Input should be 'all-linear' (got 5)" in message


def test_cross_field_rule():
    assert "attack.budget=custom needs at least one" in _error("default", ["attack.budget=custom"])


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train..lr=1", "train.lr=[1,"])
def test_bad_override_syntax(bad):
    assert f"override {bad!r}" in _error("tiny", [bad])


def test_bad_override_path_into_scalar():
    assert "train.lr: is a float, not a section" in _error("tiny", ["train.lr.x=1"])


def test_bad_syntax_reported_with_validation_errors():
    message = _error("tiny", ["oops", "train.lr=0"])
    assert "override 'oops'" in message and "train.lr:" in message


def test_missing_file_and_unknown_name(tmp_path):
    assert "not found" in _error(str(tmp_path / "nope.yaml"))
    assert "unknown recipe 'nope'" in _error("nope")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("train: [\n", "invalid YAML at line"), ("a: 1\na: 2\n", "duplicate key 'a'"), ("- 1\n", "mapping")],
)
def test_bad_yaml_one_line(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert expected in _error(str(path))


def test_empty_file_is_all_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_recipe(str(path)).train.steps == 2000


def test_file_path_to_packaged_recipe():
    assert load_recipe(str(recipe_path("tiny"))) == load_recipe("tiny")


def test_hash_stable_and_sensitive():
    h = recipe_hash(load_recipe("tiny"))
    assert len(h) == 64 and h == recipe_hash(load_recipe("tiny"))
    assert h == recipe_hash(load_recipe("tiny", ["train.lr=0.003"]))
    assert h != recipe_hash(load_recipe("tiny", ["train.lr=0.002"]))
    assert h != recipe_hash(load_recipe("tiny", ["model.lora.r=16"]))


def test_dump_has_every_key():
    text = dump_recipe_yaml(load_recipe("tiny"))
    for key in ("relative_step:", "lora: null", "max_bounded_harm_ratio:", "heldout_fraction:", "where: {}"):
        assert key in text


@pytest.mark.parametrize("override", ["seam.beta=.inf", "seam.alpha=.nan", "seam.beta=inf", "train.lr=-.inf",
                                      "attack.criteria.max_utility_drop=.inf", "data.heldout_fraction=.nan"])
def test_no_float_key_takes_inf_or_nan(override):
    with pytest.raises(UserError, match=rf"{override.split('=')[0]}: Input should be a finite number"):
        load_recipe("tiny", [override])


def test_hvp_graph_key():
    assert load_recipe("tiny").seam.hvp_graph == "reuse"
    assert load_recipe("tiny", ["seam.hvp_graph=recompute"]).seam.hvp_graph == "recompute"
    assert "seam.hvp_graph: Input should be 'reuse' or 'recompute'" in _error("tiny", ["seam.hvp_graph=keep"])


def test_unlearn_pass_key():
    assert load_recipe("tiny").seam.unlearn_pass == "own"
    assert load_recipe("smollm2-135m-cpu").seam.unlearn_pass == "perturbed"
    fold = ["seam.unlearn_pass=perturbed", "seam.difference=forward", "seam.self_check=false"]
    assert load_recipe("tiny", fold).seam.unlearn_pass == "perturbed"
    for bad in ("seam.difference=hvp", "seam.self_check=true", "seam.unlearn_loss=ascent"):
        assert "seam.unlearn_pass=perturbed needs unlearn_loss=bounded_lens" in _error("tiny", [*fold, bad])
    assert "seam.unlearn_pass: Input should be 'own' or 'perturbed'" in _error("tiny", ["seam.unlearn_pass=fold"])
