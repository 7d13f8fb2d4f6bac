"""Endless, resumable batch streams and the deterministic held-out split."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch

from seamharden.data.formatting import collate


class Stream:
    """Yields collated batches (``collate`` output, LongTensors ``[B, T]``) forever.

    Each epoch visits every example once in an order drawn from ``(seed, epoch)``;
    a batch that runs past the end of an epoch continues into the next one, so no
    example is dropped and streams of different lengths never truncate one another.
    ``state_dict`` is the position ``(epoch, index)``: a stream restored from it
    yields exactly the batches the original would have yielded next.
    """

    def __init__(self, examples: list[dict[str, list[int]]], batch_size: int, seed: int, pad_token_id: int):
        if not examples:
            raise ValueError("a stream needs at least one example")
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.pad_token_id = pad_token_id
        self.epoch = 0
        self.index = 0
        self._order = self._permutation(0)

    def __len__(self) -> int:
        """Number of examples (one epoch), not of batches: the stream is endless."""
        return len(self.examples)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(f"{self.seed}/{epoch}").shuffle(order)
        return order

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        picked = []
        while len(picked) < self.batch_size:
            if self.index == len(self._order):
                self.epoch += 1
                self.index = 0
                self._order = self._permutation(self.epoch)
            picked.append(self.examples[self._order[self.index]])
            self.index += 1
        return collate(picked, self.pad_token_id)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "size": len(self.examples)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; the data and seed must be those of the saved stream."""
        if state["seed"] != self.seed or state["size"] != len(self.examples):
            raise ValueError(f"stream state is for seed={state['seed']}, {state['size']} examples; "
                             f"this stream has seed={self.seed}, {len(self.examples)} examples")
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])
        self._order = self._permutation(self.epoch)


def split_heldout(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, heldout), both in input order; deterministic in ``seed``.

    Splits by distinct prompt, so a prompt that occurs twice never lands on both
    sides. Holds out ``round(fraction * prompts)`` prompts, at least one when there
    are two or more, and always leaves at least one for training.
    """
    if not 0 < fraction < 1:
        raise ValueError("fraction must be in (0, 1)")
    prompts = list(dict.fromkeys(r["prompt"] for r in records))
    if len(prompts) < 2:
        return list(records), []
    count = min(max(1, round(fraction * len(prompts))), len(prompts) - 1)
    shuffled = prompts[:]
    random.Random(seed).shuffle(shuffled)
    held = set(shuffled[:count])
    return [r for r in records if r["prompt"] not in held], [r for r in records if r["prompt"] in held]


def reserve_prompts(records: list[dict], count: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(rest, reserved): ``count`` distinct prompts (all their records) set aside, deterministic in ``seed``.

    Always leaves at least one prompt in ``rest``; both lists keep the input order.
    """
    prompts = list(dict.fromkeys(r["prompt"] for r in records))
    count = min(count, len(prompts) - 1)
    if count <= 0:
        return list(records), []
    shuffled = prompts[:]
    random.Random(f"reserve/{seed}").shuffle(shuffled)
    held = set(shuffled[:count])
    return [r for r in records if r["prompt"] not in held], [r for r in records if r["prompt"] in held]
