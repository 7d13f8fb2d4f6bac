"""``seamharden push DIR ORG/NAME``: publish a hardened-model directory to the Hub.

The command resolves the endpoint and token (``seamharden.hub.resolve``) and calls
``seamharden.hub.publish.publish``; the token is never printed.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("push")
@click.argument("folder", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo_id", metavar="ORG/NAME")
@click.option("--private", is_flag=True, help="Create the repo as private (an existing repo keeps its visibility).")
@click.option("--revision", default=None, help="Branch to commit to; created from main if missing.")
@click.option("--commit-message", default=None, help="Summary line of the commit.")
@click.option("--force", is_flag=True,
              help="Publish even if the smoke test failed or did not run; the model card will say so.")
@click.option("--endpoint", default=None, metavar="URL",
              help="Hub URL [default: HF_ENDPOINT or https://huggingface.co].")
def push(folder: Path, repo_id: str, private: bool, revision: str | None, commit_message: str | None,
         force: bool, endpoint: str | None) -> None:
    """Publish the output directory DIR of `seamharden protect` to the model repo ORG/NAME in one commit.

    Uses the token from HF_TOKEN or `hf auth login`. Prints the commit URL.
    """
    from seamharden.hub.publish import publish
    from seamharden.hub.resolve import resolve_endpoint, resolve_token
    from seamharden.manifest import read_manifest, unexpected_files

    url = publish(
        folder, repo_id, private=private, revision=revision, commit_message=commit_message, force=force,
        endpoint=resolve_endpoint(endpoint), token=resolve_token(),
    )
    click.echo(url)
    skipped = unexpected_files(folder, read_manifest(folder))
    if skipped:
        click.echo(f"note: not published (not listed in the manifest): {', '.join(skipped)}", err=True)


commands = [push]
