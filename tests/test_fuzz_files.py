"""Hostile files: corrupted bundles, HARs and experiment configs, fuzzed with hypothesis.

Whatever the file holds (truncated JSON, wrong types, huge numbers, names such as
``../../x``, a pickle), reading it either works or raises one of the documented errors
(:class:`kit.BundleError` for a file, :class:`kit.ConfigError` for a value), writes
nothing outside its folder (a sentinel tree next to it is checked byte for byte) and
runs no code from the file (a pickle whose unpickling would create a folder).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kit
from kit.cli.run import load_config
from kit.experiment import trial_id
from kit.network import Network

SETTINGS = settings(
    max_examples=int(os.environ.get("KIT_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples in CI every time; raise KIT_FUZZ_EXAMPLES to explore
)
DOCUMENTED = (kit.BundleError, kit.ConfigError)

# values a hostile file puts where a well-formed one has something else
NASTY_TEXT = [
    "../../x",
    "../../../sentinel/canary.txt",
    "/etc/passwd",
    "tables/../../sentinel/canary.txt",
    "tables",
    ".",
    "..",
    "",
    "\x00",
    "tables/\x00.parquet",
    "a" * 5000 + ".parquet",
    "..\\..\\x",
    "C:\\Windows\\x",
    "tables/trials.pkl",
    "object",
    "category",
    "datetime64[ns]",
    "int8",
    "Int64",
    "complex128",
    "float16",
    "V8",
    "S",
    "Sparse[int64]",
    "interval",
    "period[D]",
    "bool",
    "str",
    "NaN",
]
NASTY_NUMBERS = [0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, 1e-320, float("inf"), float("nan")]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY_TEXT),
    st.sampled_from(NASTY_NUMBERS),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


# ---------------------------------------------------------------------- mutations


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) into a JSON document, the root excluded."""
    out = []
    if isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, list):
        items = list(enumerate(obj))
    else:
        return out
    for k, v in items:
        out.append((*prefix, k))
        out += _paths(v, (*prefix, k))
    return out


def _set(doc: Any, path: tuple, value: Any, delete: bool) -> None:
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@st.composite
def mutated(draw: st.DrawFn, doc: Any, max_edits: int = 4) -> Any:
    """A copy of ``doc`` with a few values replaced by hostile ones (or deleted)."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_edits))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        _set(doc, path, draw(json_value), draw(st.booleans()) and draw(st.booleans()))
    return doc


@st.composite
def hostile_text(draw: st.DrawFn, doc: Any) -> str:
    """``doc`` as JSON text, then mutated, truncated or spliced with junk."""
    text = json.dumps(draw(mutated(doc)) if draw(st.booleans()) else doc)
    how = draw(st.sampled_from(["as_is", "truncate", "splice", "huge_int", "bom"]))
    if how == "truncate":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    elif how == "splice":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=10)) + text[at:]
    elif how == "huge_int":  # past Python's 4300-digit limit for int(str)
        text = text.replace("1", "1" + "7" * 5000, 1)
    elif how == "bom":
        text = "\ufeff" + text
    return text


class Exploit:
    """Unpickling this creates a folder: proof that code from a file ran."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.target,))


# ---------------------------------------------------------------------- sandbox


class Sandbox:
    """A temporary tree: ``work/`` for the file under test, ``sentinel/`` that must not change."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kit-fuzz-"))
        self.work = self.root / "work"
        self.sentinel = self.root / "sentinel"
        self.pwned = self.root / "pwned"
        self.work.mkdir()
        self.sentinel.mkdir()
        (self.sentinel / "canary.txt").write_text("canary\n")
        (self.sentinel / "x").write_text("do not touch\n")
        self.before: dict[str, str] | None = None

    def snapshot(self) -> dict[str, str]:
        out = {}
        for p in sorted(self.root.rglob("*")):
            rel = str(p.relative_to(self.root))
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        return out

    def freeze(self) -> None:
        self.before = self.snapshot()

    def check(self, allowed: Path | None = None) -> None:
        """Nothing changed (outside ``allowed``), no code ran, nothing escaped the root."""
        assert not self.pwned.exists(), "code from the file was executed"
        after = self.snapshot()
        assert self.before is not None
        prefix = str(allowed.relative_to(self.root)) if allowed is not None else None
        changed = {k for k in set(self.before) | set(after) if self.before.get(k) != after.get(k)}
        if prefix is not None:
            changed = {k for k in changed if not (k == prefix or k.startswith(prefix + os.sep))}
        assert not changed, f"files changed outside the target: {sorted(changed)[:5]}"
        for outside in (self.root.parent / "x", Path.cwd() / "x"):
            assert not outside.exists() or (outside.is_dir() and outside.stat().st_mtime < 0), outside

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def sandbox():
    box = Sandbox()
    try:
        yield box
    finally:
        box.close()


def documented_only(fn, *args, **kw) -> Any:
    """Call ``fn``; it may return or raise a documented error, nothing else."""
    try:
        return fn(*args, **kw)
    except DOCUMENTED as exc:
        assert str(exc), "an error must say what is wrong"
        return exc


# ---------------------------------------------------------------------- fixtures

FUZZ_NET = Network.from_kwargs(latency="5ms", name="lan")


@pytest.fixture(scope="module")
def experiment():
    return kit.Experiment(
        scenarios=[kit.Scenario(events=3, gap=0.001, name="tiny"), "headers_then_close"],
        networks=[None, FUZZ_NET],
        trials=2,
        seed=3,
        name="fuzz",
    )


@pytest.fixture(scope="module")
def bundle(experiment, server, tmp_path_factory):
    """A real bundle (parquet) and its journal, saved once; each example copies it."""
    base = tmp_path_factory.mktemp("base")
    experiment.run(4, out=base / "run", server=server, progress=False)
    result = kit.load(base / "run")
    result.save(base / "csv", format="csv")
    result.to_har(base / "run.har")
    # a crashed run: its config and journal, no bundle.json (what kit.load(recover=True) reads)
    crashed = base / "crashed"
    crashed.mkdir()
    (crashed / "experiment.json").write_text(json.dumps(experiment.to_dict()))
    cell = experiment.cells[0]
    lines = []
    for t in range(2):
        seed = experiment.seed_of(trial_id(0, t))
        trace = kit.stream(server.url_for(cell.scenario), policy=cell.policy, trial=str(seed))
        lines.append(json.dumps(trace.to_record(trial_id(0, t), 0, t, seed).to_dict()))
    (crashed / "trials.jsonl").write_text("\n".join(lines) + "\n")
    assert len(kit.load(crashed, recover=True).trials) == 2
    return base


def _copy_bundle(src: Path, box: Sandbox, name: str = "bundle") -> Path:
    dst = box.work / name
    shutil.copytree(src, dst)
    return dst


def _rehash(folder: Path, doc: dict, table: str) -> None:
    """Make bundle.json's checksum match a corrupted table, so the parser is reached."""
    info = doc["tables"][table]
    file = folder / info["file"]
    info["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()


# ------------------------------------------------------------------------ bundles


def test_the_base_bundle_loads(bundle):
    assert len(kit.load(bundle / "run").trials) == 8
    assert len(kit.load(bundle / "csv").trials) == 8


@SETTINGS
@given(data=st.data(), fmt=st.sampled_from(["run", "csv"]))
def test_corrupt_bundle_json(bundle, data, fmt):
    with sandbox() as box:
        folder = _copy_bundle(bundle / fmt, box)
        doc = json.loads((folder / "bundle.json").read_text())
        (folder / "bundle.json").write_text(data.draw(hostile_text(doc)))
        box.freeze()
        out = documented_only(kit.load, folder)
        if isinstance(out, kit.Result):
            documented_only(lambda: kit.Experiment.from_dict(out.config))
        box.check()


@SETTINGS
@given(
    data=st.data(),
    table=st.sampled_from(["trials", "attempts", "chunks", "server", "proxy"]),
    how=st.sampled_from(["truncate", "flip", "random", "csv_as_parquet", "empty", "pickle", "pickle_named_pkl"]),
    rehash=st.booleans(),
    fmt=st.sampled_from(["run", "csv"]),
)
def test_corrupt_tables(bundle, data, table, how, rehash, fmt):
    with sandbox() as box:
        folder = _copy_bundle(bundle / fmt, box)
        doc = json.loads((folder / "bundle.json").read_text())
        file = folder / doc["tables"][table]["file"]
        raw = file.read_bytes()
        if how == "truncate":
            file.write_bytes(raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))])
        elif how == "flip":
            at = data.draw(st.integers(0, len(raw) - 1))
            file.write_bytes(raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1 :])
        elif how == "random":
            file.write_bytes(data.draw(st.binary(max_size=256)))
        elif how == "csv_as_parquet":
            file.write_bytes(b"trial_id,cell\nc000-t0000,1\n")
        elif how == "empty":
            file.write_bytes(b"")
        elif how == "pickle":
            file.write_bytes(pickle.dumps(Exploit(box.pwned)))
        elif how == "pickle_named_pkl":
            pkl = file.with_suffix(".pkl")
            pkl.write_bytes(pickle.dumps(Exploit(box.pwned)))
            doc["tables"][table]["file"] = str(pkl.relative_to(folder))
            file = pkl
        if rehash:
            _rehash(folder, doc, table)
        (folder / "bundle.json").write_text(json.dumps(doc))
        box.freeze()
        documented_only(kit.load, folder)
        box.check()


@SETTINGS
@given(
    name=st.sampled_from(NASTY_TEXT),
    table=st.sampled_from(["trials", "chunks", "proxy"]),
    fmt=st.sampled_from(["run", "csv"]),
)
def test_table_names_cannot_escape_the_bundle(bundle, name, table, fmt):
    with sandbox() as box:
        folder = _copy_bundle(bundle / fmt, box)
        # a symlink inside the bundle pointing out of it is no way out either
        os.symlink(box.sentinel / "canary.txt", folder / "tables" / "link.parquet")
        doc = json.loads((folder / "bundle.json").read_text())
        doc["tables"][table]["file"] = name if name != "tables/trials.pkl" else "tables/link.parquet"
        (folder / "bundle.json").write_text(json.dumps(doc))
        box.freeze()
        out = documented_only(kit.load, folder)
        if name not in ("tables/trials.pkl",):
            assert isinstance(out, kit.BundleError), (name, out)
        box.check()


def test_parquet_with_a_pickled_extension_type_runs_nothing(bundle):
    """pyarrow's old ``arrow.py_extension_type`` unpickled field metadata (CVE-2023-47248)."""
    import pyarrow.parquet as pq

    with sandbox() as box:
        folder = _copy_bundle(bundle / "run", box)
        doc = json.loads((folder / "bundle.json").read_text())
        file = folder / doc["tables"]["trials"]["file"]
        table = pq.read_table(file)
        meta = {
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": pickle.dumps(Exploit(box.pwned)),
        }
        field = table.schema.field(0).with_metadata(meta)
        table = table.cast(table.schema.set(0, field))
        pq.write_table(table, file)
        _rehash(folder, doc, "trials")
        (folder / "bundle.json").write_text(json.dumps(doc))
        box.freeze()
        documented_only(kit.load, folder)
        box.check()


@SETTINGS
@given(data=st.data())
def test_corrupt_journal_recovery(bundle, data):
    """``kit.load(recover=True)`` on a crashed run's journal and config."""
    with sandbox() as box:
        folder = _copy_bundle(bundle / "crashed", box)
        lines = (folder / "trials.jsonl").read_text().splitlines()
        which = data.draw(st.sampled_from(["journal", "config"]))
        if which == "journal":
            i = data.draw(st.integers(0, len(lines) - 1))
            lines[i] = data.draw(hostile_text(json.loads(lines[i])))
            (folder / "trials.jsonl").write_text("\n".join(lines) + "\n")
        else:
            cfg = json.loads((folder / "experiment.json").read_text())
            (folder / "experiment.json").write_text(data.draw(hostile_text(cfg)))
        box.freeze()
        documented_only(kit.load, folder, recover=True)
        box.check()


# ---------------------------------------------------------------------------- HAR


@SETTINGS
@given(data=st.data())
def test_corrupt_har(bundle, data):
    doc = json.loads((bundle / "run.har").read_text())
    with sandbox() as box:
        file = box.work / "x.har"
        file.write_text(data.draw(hostile_text(doc)))
        box.freeze()
        documented_only(kit.from_har, file)
        box.check()


def test_har_entry_fields_of_the_wrong_type_are_bundle_errors(bundle, tmp_path):
    doc = json.loads((bundle / "run.har").read_text())
    entry = doc["log"]["entries"][0]
    cases = [
        ("_chunks", [1, 2]),
        ("_chunks", [{"t": "soon"}]),
        ("_eventSourceMessages", ["not an object"]),
        ("_kit", ["list"]),
        ("time", "1e999"),
    ]
    for key, value in cases:
        bad = copy.deepcopy(doc)
        bad["log"]["entries"][0] = {**entry, key: value}
        (tmp_path / "bad.har").write_text(json.dumps(bad))
        out = documented_only(kit.from_har, tmp_path / "bad.har")
        assert isinstance(out, kit.Result | kit.BundleError), (key, value, out)


# ------------------------------------------------------------- experiment configs


@SETTINGS
@given(data=st.data())
def test_corrupt_experiment_dict(experiment, data):
    cfg = experiment.to_dict()
    bad = data.draw(mutated(cfg, max_edits=3))
    with sandbox() as box:
        box.freeze()
        documented_only(kit.Experiment.from_dict, bad)
        box.check()


@SETTINGS
@given(value=json_value)
def test_any_json_value_as_an_experiment(value):
    documented_only(kit.Experiment.from_dict, value)
    if isinstance(value, dict):
        documented_only(kit.Experiment.from_dict, {"scenarios": ["ok"], **value})


TOML = """
name = "fuzz"
trials = 2
seed = 7
concurrency = 4
scenarios = ["ok", {preset = "slow_first_byte", first_byte_delay = 0.2}]
networks = ["direct", {latency = "20ms"}]
policies = [{first_chunk = 0.1}, {idle = 1.0}]
"""


@st.composite
def hostile_toml(draw: st.DrawFn) -> str:
    cfg = tomllib.loads(TOML)
    how = draw(st.sampled_from(["value", "truncate", "splice", "line"]))
    if how == "value":
        key = draw(st.sampled_from(sorted(cfg)))
        value = draw(json_leaf.filter(lambda v: v is not None and v == v and v not in (float("inf"), float("-inf"))))
        return _toml_with(cfg, key, value)
    text = TOML
    if how == "truncate":
        return text[: draw(st.integers(0, len(text) - 1))]
    if how == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(max_size=12)) + text[at:]
    return text + draw(st.sampled_from(['x = "../../x"\n', 'name = "../../x"\n', "trials = 1e309\n", "seed = -1\n"]))


def _toml_with(cfg: dict, key: str, value: Any) -> str:
    lines = [line for line in TOML.splitlines() if not line.startswith(f"{key} ")]
    return "\n".join(lines) + f"\n{key} = {json.dumps(value)}\n"


@SETTINGS
@given(text=hostile_toml())
def test_corrupt_toml_configs(text, monkeypatch):
    """What ``kit run`` does with a config file before any trial runs: documented errors only."""
    from kit.cli import main

    ran: list[Any] = []
    monkeypatch.setattr(kit.Experiment, "run", lambda self, *a, **kw: ran.append(kw.get("out")) or _FakeResult())
    with sandbox() as box:
        cfg = box.work / "experiment.toml"
        cfg.write_text(text, encoding="utf-8")
        box.freeze()
        documented_only(lambda: kit.Experiment.from_dict(load_config(cfg)))
        with contextlib.redirect_stderr(open(os.devnull, "w")), contextlib.redirect_stdout(open(os.devnull, "w")):
            code = main(["run", str(cfg), "-o", str(box.work / "out"), "--quiet"])
        assert code in (0, 2)
        assert all(Path(o) == box.work / "out" for o in ran)
        box.check()


class _FakeResult:
    """What the CLI reads from a Result, so the config path is tested without running trials."""

    complete = True

    @property
    def trials(self):
        import pandas as pd

        return pd.DataFrame({"ok": []})


def test_a_hostile_config_runs_only_inside_its_folder(server, tmp_path):
    """Names such as ``../../x`` in a config are labels, never paths."""
    sc = kit.Scenario(events=2, gap=0.0, name="../../x")
    exp = kit.Experiment(scenarios=[sc], trials=2, seed=1, name="../../../x")
    with sandbox() as box:
        box.freeze()
        out = box.work / "run"
        result = exp.run(2, out=out, server=server, progress=False)
        assert len(result.trials) == 2 and result.trials["ok"].all()
        assert set(os.listdir(box.work)) == {"run"}
        loaded = kit.load(out)
        assert list(loaded.trials["scenario"]) == ["../../x", "../../x"]
        box.check(allowed=out)
