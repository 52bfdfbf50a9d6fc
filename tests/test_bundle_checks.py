"""Hostile bundle files: checked before decoding, each problem a BundleError naming file and field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import kit
from kit.experiment import Experiment


@pytest.fixture(scope="module")
def result(server):
    return Experiment(scenarios=[kit.Scenario(events=3, gap=0.0)], trials=2, seed=3).run(
        2, server=server, progress=False
    )


@pytest.fixture()
def saved(result, tmp_path):
    return result.save(tmp_path / "run")


def manifest(path: Path) -> dict:
    return json.loads((path / "bundle.json").read_text())


def write_manifest(path: Path, doc: dict) -> None:
    (path / "bundle.json").write_text(json.dumps(doc))


def plant(path: Path, name: str, table: pa.Table, *, rows: int | None = None) -> None:
    """Replace table ``name`` by ``table``, with a manifest that vouches for it (checksum, rows)."""
    file = path / "tables" / f"{name}.parquet"
    pq.write_table(table, file, compression="zstd")
    doc = manifest(path)
    doc["tables"][name]["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    doc["tables"][name]["rows"] = table.num_rows if rows is None else rows
    write_manifest(path, doc)


@pytest.fixture()
def no_decoding(monkeypatch):
    """Fail the test if the planted chunks table is decoded (the tables before it load as usual)."""
    original = pd.read_parquet

    def refuse(path, *a, **k):
        if Path(path).name == "chunks.parquet":
            raise AssertionError("a table was decoded before its metadata was checked")
        return original(path, *a, **k)

    monkeypatch.setattr(pd, "read_parquet", refuse)


def test_row_count_in_the_footer_is_checked_before_decoding(saved, no_decoding):
    chunks = pq.read_table(saved / "tables" / "chunks.parquet")
    bomb = pa.concat_tables([chunks] * 50)
    plant(saved, "chunks", bomb, rows=chunks.num_rows)  # the manifest keeps the honest count
    with pytest.raises(kit.BundleError, match=r"chunks.parquet: the file holds .* rows, bundle.json says"):
        kit.load(saved)


def test_a_table_over_the_row_limit_is_refused_before_decoding(saved, no_decoding, monkeypatch):
    monkeypatch.setattr("kit._bundle_checks.MAX_TABLE_ROWS", 100)
    chunks = pq.read_table(saved / "tables" / "chunks.parquet")
    bomb = pa.concat_tables([chunks] * (101 // max(chunks.num_rows, 1) + 1))
    plant(saved, "chunks", bomb)  # the manifest agrees: only the limit stops it
    with pytest.raises(kit.BundleError, match=r"tables.chunks.rows=.*\[0, 100\]"):
        kit.load(saved)


@pytest.mark.parametrize("file", ["bundle.json", "experiment.json", "trials.jsonl"])
def test_deeply_nested_json_is_a_bundle_error_naming_the_file(saved, tmp_path, file):
    deep = "[" * 100_000 + "]" * 100_000
    if file == "bundle.json":
        (saved / "bundle.json").write_text(deep)
        target = saved
    else:
        target = tmp_path / "crashed"
        target.mkdir()
        (target / "experiment.json").write_text(json.dumps(Experiment(scenarios=["ok"], trials=1).to_dict()))
        (target / "trials.jsonl").write_text("")
        (target / file).write_text(
            deep + ("\n" if file == "trials.jsonl" else "") + ("{}\n" if file == "trials.jsonl" else "")
        )
    with pytest.raises(kit.BundleError, match=rf"{file}"):
        kit.load(target, recover=file != "bundle.json")


def test_json_nested_within_what_python_parses_is_still_refused(saved):
    doc = manifest(saved)
    doc["run"]["note"] = json.loads("[" * 500 + "]" * 500)
    write_manifest(saved, doc)
    with pytest.raises(kit.BundleError, match=r"bundle.json: field 'run.note\[0\]"):
        kit.load(saved)


def test_a_manifest_without_columns_is_refused(saved):
    doc = manifest(saved)
    del doc["tables"]["trials"]["columns"]
    write_manifest(saved, doc)
    with pytest.raises(kit.BundleError, match=r"bundle.json: tables.trials.columns is missing"):
        kit.load(saved)


def test_swapped_tables_are_refused(saved):
    doc = manifest(saved)
    doc["tables"]["trials"], doc["tables"]["chunks"] = doc["tables"]["chunks"], doc["tables"]["trials"]
    write_manifest(saved, doc)
    with pytest.raises(kit.BundleError, match=r"tables.trials.columns lacks"):
        kit.load(saved)


def test_an_unknown_dtype_is_refused(saved):
    doc = manifest(saved)
    doc["tables"]["events"]["columns"]["type"] = "V10"
    write_manifest(saved, doc)
    with pytest.raises(kit.BundleError, match=r"tables.events.columns.type has dtype 'V10'"):
        kit.load(saved)


def test_kit_report_on_a_hostile_bundle_exits_2_without_a_traceback(saved, tmp_path, capsys):
    from kit.cli import main

    doc = manifest(saved)
    del doc["tables"]["attempts"]["columns"]
    write_manifest(saved, doc)
    assert main(["report", str(saved), "-o", str(tmp_path / "r.html")]) == 2
    assert "tables.attempts.columns" in capsys.readouterr().err
