"""Every subcommand of ``seamharden``; each module under ``seamharden.cli`` exports ``commands``.

The command modules import only click and ``seamharden.errors`` at top level, so that listing
the commands and ``--help`` never import torch or transformers; each body imports what it runs.
Commands in ``LOADS_MODELS`` quiet transformers' logging first (our progress replaces its bars).
"""

from __future__ import annotations

import functools

import click

from seamharden.cli import attack_cmd, convert_cmd, demo_cmd, fidelity_cmd, protect_cmd, push_cmd, recipes_cmd

LOADS_MODELS = frozenset({"protect", "attack", "verify", "fidelity", "demo", "convert-gguf"})


def quiet_transformers() -> None:
    """Our own progress bar and messages replace transformers' shard bars and notices."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _quiet_first(command: click.Command) -> click.Command:
    """``command`` with transformers quieted when its body runs (not for ``--help``)."""
    callback = command.callback

    @functools.wraps(callback)
    def run(*args, **kwargs):
        quiet_transformers()
        return callback(*args, **kwargs)

    command.callback = run
    return command


ALL = [
    command if command.name not in LOADS_MODELS else _quiet_first(command)
    for command in (
        *recipes_cmd.commands,
        *protect_cmd.commands,
        *fidelity_cmd.commands,
        *attack_cmd.commands,
        *push_cmd.commands,
        *demo_cmd.commands,
        *convert_cmd.commands,
    )
]
