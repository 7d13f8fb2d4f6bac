"""The attack suite's local evaluation paths (a judge model, lm-eval tasks) are never published."""

import json

from seamharden.hub.publish import published_contents
from seamharden.manifest import read_manifest, write_manifest


def test_a_local_judge_and_task_directory_are_never_published(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    judge, tasks = str(tmp_path / "judges" / "deberta"), str(tmp_path / "tasks")
    (folder / "report.json").write_text(json.dumps({"results": {"hardened_model": str(folder), "extra": {
        "eval_settings": {"judge_model": judge, "benchmark_include": tasks}}}}))
    (folder / "recipe.yaml").write_text(f"attack:\n  judge_model: {judge}\n  benchmark_include: {tasks}\n")
    write_manifest(folder, base_model="org/base", base_revision=None, recipe_hash="h", data_fingerprints={},
                   smoke_test={"verdict": "pass"})
    published = published_contents(folder, read_manifest(folder), "acme/m", None)
    assert not [rel for rel, data in published.items() if str(tmp_path).encode() in data]
    settings = json.loads(published["report.json"])["results"]["extra"]["eval_settings"]
    assert settings == {"judge_model": "a local judge model", "benchmark_include": "a local lm-eval task directory"}
