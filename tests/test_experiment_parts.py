"""Parquet parts: a worker's tables of its trials, merged by the driver, read back after a crash."""

from __future__ import annotations

import json
import random
import shutil

import pytest

import kit
from kit.experiment import CONFIG_FILE, JOURNAL, PARTS, Experiment, _parts
from kit.tables import build, merge

PLAIN = kit.Scenario(events=3, gap=0.001, name="plain")
# a fault list only this scenario has: a part of PLAIN's trials alone types that column otherwise
CUT = kit.Scenario(events=4, gap=kit.Gap.uniform(0.001, 0.003), faults=(kit.Close(after=2),), name="cut")
GRID = Experiment(scenarios=[PLAIN, CUT], policies=[kit.Policy(), kit.Policy(total=5)], trials=3, seed=9)


class Recorded(Experiment):
    """GRID, keeping the trial records its run's Result is built from (as its journal holds them)."""

    def result_of(self, records, **kw):
        self.records = [json.loads(json.dumps(r.to_dict())) for r in records]
        return super().result_of(records, **kw)


@pytest.fixture(scope="module")
def records(server):
    """Every trial record of a run of GRID (JSON-ready, as in ``trials.jsonl``)."""
    exp = Recorded.from_dict(GRID.to_dict())
    result = exp.run(2, server=server, progress=False)
    assert len(exp.records) == len(GRID) == len(result.trials)
    assert result.equals(GRID.result_of(exp.records, meta=result.meta))
    return exp.records


def cells():
    return [c.labels for c in GRID.cells]


def part(recs):
    """A worker's part of ``recs``, as the driver decodes it."""
    return _parts.decode(_parts.encode(build([kit.records.TrialRecord.coerce(r) for r in recs], cells())[0]), "test")


def test_parts_merge_into_the_tables_of_one_build(records):
    whole = GRID.result_of(records)
    shuffled = random.Random(1).sample(records, len(records))
    streamed, rest = shuffled[:3], shuffled[3:]
    chunks = [rest[i : i + 4] for i in range(0, len(rest), 4)]
    parts = [part(c) for c in reversed(chunks)]
    merged = GRID.result_of(streamed, parts=parts)
    assert merged.equals(whole)  # same rows, same order, same dtypes, every table
    assert merged.meta["trials_done"] == len(records)
    # the test means something: a part of one cell types a parameter column otherwise
    plain = [r for r in records if r["cell"] == 0]
    one, full = build([kit.records.TrialRecord.coerce(r) for r in plain], cells())[1], whole.trials.dtypes
    assert any(str(full[k]) != d for k, d in one.items() if "." in k)


def test_a_trial_in_two_parts_is_kept_once(records):
    whole = GRID.result_of(records)
    tables = merge([part(records[:8]), part(records[5:]), part(records[:2])], cells())
    for name, df in tables.items():
        assert df.equals(whole.tables[name]), name


def test_a_corrupt_part_is_a_kit_error_naming_it(records):
    blobs = _parts.encode(build([kit.records.TrialRecord.coerce(r) for r in records[:2]], cells())[0])
    with pytest.raises(kit.BundleError, match=r"part-00003/chunks\.parquet: cannot read"):
        _parts.decode({**blobs, "chunks": blobs["chunks"][:-40]}, "part-00003")
    other = _parts.encode(build([kit.records.TrialRecord.coerce(r) for r in records[2:4]], cells())[0])
    with pytest.raises(kit.BundleError, match=r"part-00003: table 'chunks' has rows of trials it does not hold"):
        _parts.decode({**blobs, "chunks": other["chunks"]}, "part-00003")
    with pytest.raises(kit.BundleError, match=r"part-00003: table 'events' is missing"):
        _parts.decode({k: v for k, v in blobs.items() if k != "events"}, "part-00003")
    with pytest.raises(kit.BundleError, match=r"trials\.parquet: column 'ok' is missing"):
        wrong = _parts.encode({**build([], cells())[0], "trials": GRID.result_of(records).trials.drop(columns="ok")})
        _parts.decode({**blobs, "trials": wrong["trials"]}, "part-00003")


def crashed_folder(tmp_path, records):
    """A run folder as a driver killed mid-run leaves it: its journal, a worker's part, a chunk journal."""
    run = tmp_path / "run"
    (run / PARTS).mkdir(parents=True)
    (run / CONFIG_FILE).write_text(json.dumps(GRID.to_dict()))
    (run / JOURNAL).write_text("".join(json.dumps(r) + "\n" for r in records[:4]))
    blobs = _parts.encode(build([kit.records.TrialRecord.coerce(r) for r in records[2:9]], cells())[0])
    assert _parts.write(run / PARTS, 1, blobs) == run / PARTS / "part-00001"
    lines = "".join(json.dumps(r) + "\n" for r in records[9:])
    (run / PARTS / "chunk-00002.jsonl").write_text(lines + lines[:50])  # + one line half-written
    return run


def test_recover_reads_parts_and_chunk_journals(tmp_path, records):
    run = crashed_folder(tmp_path, records)
    with pytest.warns(UserWarning, match="half-written last line"):
        got = kit.load(run, recover=True)
    assert got.meta["recovered"] and not got.complete
    whole = GRID.result_of(records)
    assert all(got.tables[n].equals(whole.tables[n]) for n in ("trials", "attempts", "chunks", "events", "server"))
    rest = GRID.run(2, workers=0, resume=got, progress=False)  # nothing left to run
    assert rest.complete and len(rest.trials) == len(GRID)


def test_a_corrupt_part_file_in_a_run_folder_names_it_and_changes_nothing(tmp_path, records):
    run = crashed_folder(tmp_path, records)
    bad = run / PARTS / "part-00001" / "server.parquet"
    bad.write_bytes(b"PAR1 not really")
    before = sorted(p.name for p in (run / PARTS).rglob("*"))
    with pytest.raises(kit.BundleError, match=str(bad)):
        kit.load(run, recover=True)
    assert sorted(p.name for p in (run / PARTS).rglob("*")) == before
    shutil.move(run / PARTS / "part-00001", tmp_path / "aside")  # set it aside: the rest recovers
    with pytest.warns(UserWarning, match="half-written"):
        got = kit.load(run, recover=True)
    assert set(got.trials["trial_id"]) == {r["trial_id"] for r in records[:4] + records[9:]}


def test_a_half_written_part_is_never_read(tmp_path, records):
    run = crashed_folder(tmp_path, records)
    tmp = run / PARTS / ".part-00005.123.tmp"
    tmp.mkdir()
    (tmp / "trials.parquet").write_bytes(b"half")
    with pytest.warns(UserWarning, match="half-written"):
        got = kit.load(run, recover=True)
    assert len(got.trials) == len(records)


def test_resuming_a_result_saved_before_fidelity_columns(server, records):
    old = GRID.result_of(records[:5])
    fidelity = ["server_late_s", "proxy_late_s", "client_lag_s", "kit_added_s", "within_budget"]
    old.tables["trials"] = old.trials.drop(columns=fidelity)
    full = GRID.run(2, server=server, resume=old, progress=False)
    assert full.complete and list(full.trials["trial_id"]) == GRID.trial_ids()
    before = full.trials["trial_id"].isin(old.trials["trial_id"])
    assert full.trials.loc[before, "within_budget"].all() and full.trials.loc[before, "kit_added_s"].isna().all()
    assert full.trials.loc[~before, "kit_added_s"].notna().all()


def test_a_corrupt_part_from_a_worker_falls_back_to_its_chunk_journal(tmp_path, records):
    """The driver's side: an unreadable part is an error naming it; its trials journalled are kept."""
    import concurrent.futures as cf

    from kit.experiment import _driver
    from kit.experiment._worker import ChunkResult, ChunkSpec

    journal = tmp_path / "chunk-00007.jsonl"
    journal.write_text("".join(json.dumps(r) + "\n" for r in records[:3]))  # the 4th was not journalled
    blobs = _parts.encode(build([kit.records.TrialRecord.coerce(r) for r in records[:4]], cells())[0])
    spec = ChunkSpec(7, GRID.to_dict(), ((0, 0),) * 4, None, part_file=str(journal))
    res = ChunkResult(7, "w1", {**blobs, "events": b"garbage"}, 4, 0, {}, 1, [], 0.0, 0.0, False, 0.0)
    fut: cf.Future = cf.Future()
    fut.set_result(res)

    class Bar:  # the driver's one progress bar
        done = 0

        def update(self, n: int = 1) -> None:
            self.done += n

    bar = Bar()
    collected = _driver.Collected(None, bar, {r["trial_id"] for r in records})
    _driver._settle(fut, spec, collected)
    assert set(collected.records) == set(collected.ids) == {r["trial_id"] for r in records[:3]}
    assert len(collected.errors) == 1 and "part-00007 from w1/events.parquet: cannot read" in collected.errors[0]
    good = _parts.encode(build([kit.records.TrialRecord.coerce(r) for r in records[3:6]], cells())[0])
    fut = cf.Future()
    fut.set_result(ChunkResult(8, "w1", good, 3, 0, {}, 1, [], 0.0, 0.0, False, 0.0))
    _driver._settle(fut, ChunkSpec(8, GRID.to_dict(), ((0, 0),) * 3, None), collected)
    assert collected.ids == {r["trial_id"] for r in records[:6]} and bar.done == 6  # one bar: parts count too
