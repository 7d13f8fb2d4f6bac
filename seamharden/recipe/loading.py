"""Load a recipe: a packaged name or a YAML file, plus ``key=value`` overrides.

Overrides use dotted paths (``train.lr=1e-4``, ``model.lora.r=8``, ``attack.attacks.0.lr=1e-3``);
values are parsed as YAML (``[a,b]`` is a list, ``null`` or an empty value is None) and beat
the file. A path through a missing or null section creates it. Every problem (bad override,
unknown key, bad type or value) is collected and raised as one single-line ``UserError``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from seamharden.errors import UserError
from seamharden.recipe.schema import Recipe

_SUFFIXES = (".yaml", ".yml")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float (YAML 1.2) and rejects duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _recipes_dir() -> Traversable:
    return files("seamharden") / "recipes"


def list_recipes() -> list[str]:
    """Names of the packaged recipes, sorted."""
    return sorted(p.name.rsplit(".", 1)[0] for p in _recipes_dir().iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Traversable:
    """The packaged YAML file of recipe ``name`` (a ``Path`` in any unzipped install)."""
    names = list_recipes()
    if name not in names:
        raise UserError(f"unknown recipe {name!r}; packaged recipes: {', '.join(names)}")
    return _recipes_dir() / f"{name}.yaml"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _YamlError(str):
    """A YAML parse failure, returned in place of a value."""


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or err
        return _YamlError(f"{where}: invalid YAML{at}: {_one_line(problem)}")


def _read_source(name_or_path: str) -> tuple[str, str, str]:
    """Return (label, default name, text) for a packaged name or a file path."""
    is_path = name_or_path.endswith(_SUFFIXES) or "/" in name_or_path or "\\" in name_or_path
    if not is_path and name_or_path in list_recipes():
        return name_or_path, name_or_path, recipe_path(name_or_path).read_text(encoding="utf-8")
    path = Path(name_or_path)
    if not path.is_file():
        if is_path:
            raise UserError(f"recipe file not found: {name_or_path}")
        raise UserError(
            f"unknown recipe {name_or_path!r}: not a packaged recipe ({', '.join(list_recipes())}) nor a file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read recipe file {name_or_path}: {_one_line(err)}") from None
    return str(path), path.stem, text


def _set_path(data: dict, keys: list[str], value: Any) -> str | None:
    """Set ``data[k1][k2]... = value``, creating missing/null sections; return an error or None."""
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                return f"{where}: no list item {key} (the list has {len(node)})"
            key = int(key)
            if node[key] is None:
                node[key] = {}
        elif node.get(key) is None:
            node[key] = {}
        node = node[key]
        if not isinstance(node, dict | list):
            return f"{where}: is a {type(node).__name__}, not a section"
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            return f"{'.'.join(keys)}: no list item {last} (the list has {len(node)})"
        node[int(last)] = value
    else:
        node[last] = value
    return None


def apply_overrides(data: dict, overrides: Sequence[str]) -> list[str]:
    """Apply ``key=value`` overrides to ``data`` in place; return the errors, one string each."""
    errors = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        keys = key.split(".")
        if not sep or not key or not all(keys):
            errors.append(f"override {item!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=1e-4")
            continue
        value = _parse_yaml(raw, f"override {item!r}")
        if isinstance(value, _YamlError):
            errors.append(str(value))
            continue
        error = _set_path(data, keys, value)
        if error:
            errors.append(f"override {item!r}: {error}")
    return errors


def _unwrap_model(annotation: Any, index: bool) -> Any:
    """The model class (or list element model) inside an annotation, for key suggestions."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg, index)
            if found is not None:
                return found
        return None
    if index and origin is list:
        return _unwrap_model(typing.get_args(annotation)[0], False)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    model: Any = Recipe
    pending_list = None
    for part in loc:
        if isinstance(part, int):
            model, pending_list = pending_list, None
        elif model is not None and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            pending_list = _unwrap_model(annotation, True)
            model = _unwrap_model(annotation, False)
        else:
            return None
        if model is None and pending_list is None:
            return None
    return model


def _is_path_part(part: Any) -> bool:
    return isinstance(part, int) or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) is not None


def _shown(value: Any) -> str:
    text = _one_line(repr(value))
    return text[:40] + "..." if len(text) > 40 else text


def _format_errors(err: ValidationError) -> list[str]:
    """One ``dotted.key: message (got value)`` per location; union alternatives joined with 'or'."""
    by_loc: dict[str, tuple[list[str], str]] = {}
    for e in err.errors():
        loc = [p for p in e["loc"] if _is_path_part(p)]
        where = ".".join(str(p) for p in loc)
        got = ""
        if e["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields) if parent else [], n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif e["type"] == "missing":
            msg = "required key missing"
        else:
            msg = _one_line(e["msg"].removeprefix("Value error, "))
            if loc and not isinstance(e["input"], dict):
                got = f" (got {_shown(e['input'])})"
        msgs, _ = by_loc.setdefault(where, ([], got))
        if msg not in msgs:
            msgs.append(msg)
    return [
        (f"{where}: " if where else "") + " or ".join(msgs) + got for where, (msgs, got) in by_loc.items()
    ]


def load_recipe(name_or_path: str, overrides: Sequence[str] = ()) -> Recipe:
    """Load, override and validate a recipe; raise one single-line ``UserError`` listing every problem.

    ``name_or_path`` is a packaged recipe name (see ``list_recipes``) or a YAML file; a file
    without a ``name`` key is named after its stem.
    """
    label, default_name, text = _read_source(name_or_path)
    data = _parse_yaml(text, f"recipe {label}")
    if isinstance(data, _YamlError):
        raise UserError(str(data))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"recipe {label}: the file must hold a mapping of sections, not a {type(data).__name__}")
    data.setdefault("name", default_name)
    errors = apply_overrides(data, overrides)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        errors += _format_errors(err)
    if errors:
        raise UserError(f"recipe {label}: " + "; ".join(errors))
    return recipe


def _canonical(recipe: Recipe) -> dict:
    return recipe.model_dump(mode="json")


def recipe_hash(recipe: Recipe) -> str:
    """sha256 hex digest of the resolved recipe as canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(_canonical(recipe), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


RESUMABLE_CHANGES = ("train.lr",)
"""Recipe keys ``protect --resume`` lets differ from the run's start (the loop applies them to the restored state)."""


def resumable_hash(recipe: Recipe) -> str:
    """``recipe_hash`` of the recipe without the keys in ``RESUMABLE_CHANGES``."""
    data = _canonical(recipe)
    for key in RESUMABLE_CHANGES:
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node[part]
        node.pop(last)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def dump_recipe_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML, every key present, in schema order; loads back to an equal recipe."""
    return yaml.safe_dump(_canonical(recipe), sort_keys=False, allow_unicode=True, width=1000)
