"""Loading one ``DataSource`` (Hub dataset, local file, built-in set) into plain records.

A record is ``{"prompt": str, "response": str | None}``; everything downstream
(alignment data, tokenisation, held-out splits, fingerprints) works on these.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from seamharden.data.builtin_sets import load_builtin
from seamharden.errors import UserError
from seamharden.recipe.schema import DataSource

LOCAL_SUFFIXES = (".json", ".jsonl", ".csv")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _hub_rows(source: DataSource, cache_dir: str | None) -> tuple[list[str], Iterator[dict]]:
    """(column names, lazy rows) of a Hub dataset or local dataset folder, via ``datasets.load_dataset``.

    Rows are read in Arrow batches so that ``max_samples`` stops early on large splits.
    """
    import datasets
    from datasets.exceptions import DatasetsError

    try:
        ds = datasets.load_dataset(source.path, name=source.subset, split=source.split, revision=source.revision,
                                   cache_dir=cache_dir)
    except (DatasetsError, OSError, ValueError) as exc:
        raise UserError(f"cannot load dataset {source.path!r} (split {source.split!r}): {_one_line(exc)}") from exc
    return list(ds.column_names), _batched_rows(ds)


def _batched_rows(ds) -> Iterator[dict]:
    for batch in ds.iter(batch_size=1024):
        keys = list(batch)
        yield from (dict(zip(keys, values, strict=True)) for values in zip(*batch.values(), strict=True))


def _jsonl_rows(text: str, path_text: str) -> list:
    """One JSON value per non-blank line; a parse error names the file's line (json's own says line 1)."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"cannot parse {path_text}: line {number} column {exc.colno}: {exc.msg}") from exc
    return rows


def _local_rows(path_text: str) -> list[dict]:
    """Rows of a local .json (array or object of rows/columns), .jsonl or .csv file."""
    path = Path(path_text).expanduser()
    if path.suffix.lower() not in LOCAL_SUFFIXES:
        raise UserError(f"unsupported local data file {path_text!r}; use one of {', '.join(LOCAL_SUFFIXES)}")
    if not path.is_file():
        raise UserError(f"local data file not found: {path_text}")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".csv":
            return list(csv.DictReader(io.StringIO(text, newline="")))
        if path.suffix.lower() == ".jsonl":
            return _jsonl_rows(text, path_text)
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise UserError(f"cannot parse {path_text}: {_one_line(exc)}") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        keys = list(data)
        if len({len(v) for v in data.values()}) > 1:
            raise UserError(f"cannot parse {path_text}: its columns have different lengths")
        data = [dict(zip(keys, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise UserError(f"{path_text}: expected a JSON list of objects")
    return data


def _equals(cell: Any, want: Any) -> bool:
    """Column filter equality; CSV cells are text, so ``false`` matches ``"False"``."""
    if cell == want:
        return True
    if isinstance(cell, str) and not isinstance(want, str):
        spelled = json.dumps(want) if isinstance(want, bool) or want is None else str(want)
        return cell.strip().lower() == spelled.lower()
    return False


def _require(columns: Iterable[str], available: list[str], source: DataSource) -> None:
    for column in columns:
        if column not in available:
            raise UserError(f"column {column!r} not found in {source.kind} data {source.path!r}; "
                            f"available columns: {', '.join(available) or '(none)'}")


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _columns(rows: list[dict]) -> list[str]:
    """Union of the rows' keys in first-seen order (JSON rows need not share keys)."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _to_records(available: list[str], rows: Iterable[dict], source: DataSource) -> list[dict]:
    """Apply ``where``, the column map and ``max_samples`` (first matching rows kept, in order)."""
    cols = source.columns
    wanted = [cols.prompt] + [c for c in (cols.input, cols.response) if c] + list(source.where)
    if available:
        _require(wanted, available, source)
    kept = islice((row for row in rows if all(_equals(row.get(k), v) for k, v in source.where.items())),
                  source.max_samples)
    records = []
    for row in kept:
        prompt = _text(row.get(cols.prompt))
        extra = _text(row.get(cols.input)) if cols.input else ""
        if extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        response = _text(row.get(cols.response)) if cols.response else None
        records.append({"prompt": prompt, "response": response})
    return records


def load_records(source: DataSource, cache_dir: str | None = None) -> list[dict]:
    """Records ``{"prompt": str, "response": str | None}`` of ``source``, filtered and capped.

    ``cache_dir`` is passed to ``datasets.load_dataset`` (hub kind); None: its default cache.
    """
    if source.kind == "hub":
        available, rows = _hub_rows(source, cache_dir)
        return _to_records(available, rows, source)
    rows = _local_rows(source.path) if source.kind == "local" else load_builtin(source.path)
    return _to_records(_columns(rows), rows, source)


def fingerprint(records: list[dict]) -> str:
    """sha256 hex of the records' canonical JSON: equal data, equal fingerprint, on any machine."""
    canonical = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
