"""``seamharden recipes``: list, print, copy and resolve the packaged recipes."""

from __future__ import annotations

from pathlib import Path

import click

from seamharden.errors import UserError


def _description(name: str) -> str:
    import yaml

    from seamharden.recipe.loading import recipe_path

    data = yaml.safe_load(recipe_path(name).read_text(encoding="utf-8")) or {}
    return str(data.get("description", "")) if isinstance(data, dict) else ""


@click.group("recipes")
def recipes() -> None:
    """List, print and copy the packaged recipes."""


@recipes.command("ls")
def ls() -> None:
    """List the packaged recipes with their descriptions."""
    from seamharden.recipe.loading import list_recipes

    names = list_recipes()
    width = max((len(n) for n in names), default=0)
    for name in names:
        click.echo(f"{name:<{width}}  {_description(name)}")


@recipes.command("cat")
@click.argument("name")
def cat(name: str) -> None:
    """Print recipe NAME's YAML as shipped, comments included."""
    from seamharden.recipe.loading import recipe_path

    click.echo(recipe_path(name).read_text(encoding="utf-8"), nl=False)


@recipes.command("cp")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def cp(name: str, path: Path, force: bool) -> None:
    """Copy recipe NAME to PATH (a file, or a directory to write NAME.yaml into)."""
    from seamharden.recipe.loading import recipe_path

    source = recipe_path(name)
    if path.is_dir():
        path = path / f"{name}.yaml"
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise UserError(f"directory {path.parent} does not exist")
    try:
        path.write_bytes(source.read_bytes())
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    click.echo(f"wrote {path}")


@recipes.command("show")
@click.argument("recipe")
@click.argument("overrides", nargs=-1)
def show(recipe: str, overrides: tuple[str, ...]) -> None:
    """Validate RECIPE (a name or a YAML file) with KEY=VALUE OVERRIDES and print it resolved."""
    from seamharden.recipe.loading import dump_recipe_yaml, load_recipe, recipe_hash

    resolved = load_recipe(recipe, overrides)
    click.echo(f"# recipe_hash: {recipe_hash(resolved)}")
    click.echo(dump_recipe_yaml(resolved), nl=False)


commands: list = [recipes]
