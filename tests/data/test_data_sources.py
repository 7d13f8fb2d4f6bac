"""load_records: hub (local dataset folder through load_dataset), local files, builtin, filters."""

import csv
import json

import pytest

from seamharden.data.sources import fingerprint, load_records
from seamharden.errors import UserError
from seamharden.recipe.schema import ColumnMap, DataSource

ROWS = [
    {"instruction": "Say hi", "input": "", "output": "hi", "is_safe": True},
    {"instruction": "Translate", "input": "bonjour", "output": "hello", "is_safe": False},
    {"instruction": "Add", "input": "2 and 3", "output": "5", "is_safe": False},
]
ALPACA = ColumnMap(prompt="instruction", input="input", response="output")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_local_jsonl_with_column_map_and_input(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    records = load_records(DataSource(kind="local", path=str(path), columns=ALPACA))
    assert records == [
        {"prompt": "Say hi", "response": "hi"},
        {"prompt": "Translate\n\nbonjour", "response": "hello"},
        {"prompt": "Add\n\n2 and 3", "response": "5"},
    ]


def test_local_json_array_and_where_and_max_samples(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    source = DataSource(kind="local", path=str(path), columns=ALPACA, where={"is_safe": False})
    assert [r["response"] for r in load_records(source)] == ["hello", "5"]
    source = DataSource(kind="local", path=str(path), columns=ALPACA, where={"is_safe": False}, max_samples=1)
    assert [r["response"] for r in load_records(source)] == ["hello"]


def test_local_csv_where_matches_text_booleans(tmp_path):
    path = tmp_path / "d.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    records = load_records(DataSource(kind="local", path=str(path), columns=ALPACA, where={"is_safe": False}))
    assert [r["prompt"] for r in records] == ["Translate\n\nbonjour", "Add\n\n2 and 3"]


def test_local_csv_keeps_multiline_quoted_fields(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('prompt,response\n"line one\nline two","a, b"\n', encoding="utf-8")
    assert load_records(DataSource(kind="local", path=str(path))) == [
        {"prompt": "line one\nline two", "response": "a, b"}]


def test_response_column_none_gives_prompt_only_records(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    source = DataSource(kind="local", path=str(path), columns=ColumnMap(prompt="instruction", response=None))
    assert load_records(source)[1] == {"prompt": "Translate", "response": None}


def test_missing_column_names_it_and_the_available_ones(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(UserError) as err:
        load_records(DataSource(kind="local", path=str(path)))
    message = str(err.value)
    assert "'prompt'" in message and "instruction, input, output, is_safe" in message
    assert "\n" not in message
    with pytest.raises(UserError, match="'category'"):
        load_records(DataSource(kind="local", path=str(path), columns=ALPACA, where={"category": "x"}))


def test_missing_file_and_unknown_extension_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found") as err:
        load_records(DataSource(kind="local", path=str(tmp_path / "absent.jsonl")))
    assert "\n" not in str(err.value)
    (tmp_path / "d.parquet").write_text("x")
    with pytest.raises(UserError, match="unsupported local data file"):
        load_records(DataSource(kind="local", path=str(tmp_path / "d.parquet")))


def test_bad_json_is_user_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a"\n', encoding="utf-8")
    with pytest.raises(UserError, match="cannot parse"):
        load_records(DataSource(kind="local", path=str(path)))


@pytest.fixture(scope="module", autouse=True)
def _datasets_imported_offline(tmp_path_factory):
    """Import ``datasets`` once, offline (it reads the env at import), outside any test's own time."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home_data")))
        import datasets  # noqa: F401


def dataset_folder(tmp_path):
    folder = tmp_path / "beavertails_like"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [
        {"prompt": "p1", "response": "r1", "is_safe": True},
        {"prompt": "p2", "response": "r2", "is_safe": False},
        {"prompt": "p3", "response": "r3", "is_safe": False},
    ])
    return str(folder)


def test_hub_path_through_load_dataset_on_a_local_folder(tmp_path):
    source = DataSource(kind="hub", path=dataset_folder(tmp_path), split="train", where={"is_safe": False})
    records = load_records(source, cache_dir=str(tmp_path / "cache"))
    assert records == [{"prompt": "p2", "response": "r2"}, {"prompt": "p3", "response": "r3"}]


def test_hub_missing_column_names_the_available_ones(tmp_path):
    source = DataSource(kind="hub", path=dataset_folder(tmp_path), columns=ColumnMap(prompt="text"))
    with pytest.raises(UserError, match="column 'text' not found .*prompt, response, is_safe"):
        load_records(source, cache_dir=str(tmp_path / "cache"))


def test_hub_bad_split_and_missing_path_are_one_line_user_errors(tmp_path):
    for source in (DataSource(kind="hub", path=dataset_folder(tmp_path), split="test"),
                   DataSource(kind="hub", path=str(tmp_path / "absent"))):
        with pytest.raises(UserError, match="cannot load dataset") as err:
            load_records(source, cache_dir=str(tmp_path / "cache"))
        assert "\n" not in str(err.value)


def _hub_failures():
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import GatedRepoError

    return [DatasetNotFoundError("Dataset 'org/x' doesn't exist on the Hub\nor cannot be accessed."),
            ConnectionError("Couldn't reach 'org/x' on the Hub (LocalEntryNotFoundError)"),
            _bare(GatedRepoError, "Access to dataset org/x is restricted.\nYou must be authenticated.")]


def _bare(cls, message):
    """An exception instance without running an __init__ that wants an HTTP response."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


def test_hub_not_found_offline_and_gated_become_one_line_user_errors(monkeypatch):
    import datasets

    for failure in _hub_failures():
        def fail(*args, failure=failure, **kwargs):
            raise failure

        monkeypatch.setattr(datasets, "load_dataset", fail)
        with pytest.raises(UserError, match=r"cannot load dataset 'org/x' \(split 'train'\): ") as err:
            load_records(DataSource(kind="hub", path="org/x"))
        assert "\n" not in str(err.value) and type(failure).__name__ in str(err.value)


def test_builtin_source():
    records = load_records(DataSource(kind="builtin", path="bgn", max_samples=5))
    assert len(records) == 5 and all(r["response"] for r in records)


def test_fingerprint_is_canonical_and_sensitive():
    a = [{"prompt": "x", "response": "y"}]
    assert fingerprint(a) == fingerprint([{"response": "y", "prompt": "x"}])
    assert fingerprint(a) != fingerprint([{"prompt": "x", "response": "y!"}])
    assert len(fingerprint(a)) == 64


def test_jsonl_parse_error_names_the_right_line(tmp_path):
    """Issue 17 item 11: json's own message says line 1 for a fault on the file's line 3."""
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": "c", "response": }\n')
    with pytest.raises(UserError, match=r"d\.jsonl: line 3 column 29: Expecting value$"):
        load_records(DataSource(kind="local", path=str(path)))
