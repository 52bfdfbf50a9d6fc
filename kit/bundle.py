"""Bundles: the folder format of a saved run (write it, read its tables back).

:func:`kit.load`, :func:`kit.rerun` and :func:`kit.compare` (:mod:`kit.compare`) build on it.

Layout::

    NAME/
      bundle.json          schema version, kit and package versions, platform, Python,
                           git commit, UTC time, clock source, the full experiment config,
                           seeds, run metadata, and per table: file, rows, sha256, dtypes
      tables/trials.parquet  attempts, chunks, events, server, connection, proxy (.parquet)

``bundle.json`` is written last, so a folder without it is not a finished bundle.
Tables are Parquet (``format="csv"`` writes CSV instead, on request). Nothing is
pickled, and loading executes nothing from the bundle: JSON and Parquet/CSV are
parsed, checksums verified, dtypes restored from ``bundle.json``. Any missing or
corrupt file raises :class:`~kit.BundleError` naming it; there is no partial load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._bundle_checks import check_columns, check_depth, check_parquet, check_rows, read_json
from ._clock import CLOCK_SOURCE
from ._errors import BundleError, ConfigError
from ._folders import check_target, swap_in
from ._redact import redact_text, redact_url
from ._safejson import loads as safe_json
from .tables import LATER_TABLES, SCHEMAS, TABLES, conform, empty

__all__ = ["SCHEMA_VERSION", "read", "read_journal", "read_manifest", "save"]

SCHEMA_VERSION = 1
FORMAT = "kit.bundle"
BUNDLE_JSON = "bundle.json"
CSV_NA = "<NA>"
_PACKAGES = ("pandas", "pyarrow", "numpy", "httpx", "h11", "scipy", "altair")


# ------------------------------------------------------------------------- folders


def prepare_folder(path: Path, *, overwrite: bool) -> Path | None:
    """Create ``path`` for a run (see :mod:`kit._folders`: only a kit folder is ever replaced)."""
    from ._folders import prepare_folder as _prepare

    return _prepare(Path(path), overwrite=overwrite)


# -------------------------------------------------------------------------- saving


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _git_commit() -> str | None:
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        if out.returncode == 0:
            return out.stdout.strip() or None
    return None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


_TEXT_COLUMNS = {
    "trials": ("message", "url"),
    "attempts": ("message", "url", "response_headers", "error", "request_headers"),
}


def _redacted(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Secrets out of the free-text columns (already redacted at the source; cheap to repeat)."""
    cols = [c for c in _TEXT_COLUMNS.get(table, ()) if c in df.columns]
    if not cols:
        return df
    df = df.copy()
    for c in cols:
        if c in ("response_headers", "request_headers"):
            from ._redact import redact_headers

            df[c] = df[c].map(lambda v: v if not isinstance(v, str) else json.dumps(redact_headers(json.loads(v))))
        elif c == "url":
            df[c] = df[c].map(lambda v: redact_url(v) if isinstance(v, str) else v)
        else:
            df[c] = df[c].map(lambda v: redact_text(v) if isinstance(v, str) else v)
        df[c] = df[c].astype(df[c].dtype if str(df[c].dtype) == "str" else "str")
    return df


def save(
    result: Any, path: str | Path, *, overwrite: bool = False, format: str = "parquet", redact: bool = True
) -> Path:
    """Write ``result`` as a bundle folder at ``path`` (see the module docstring).

    Refuses an existing path unless ``overwrite=True`` (and then replaces only a kit
    bundle folder). ``format``: ``parquet`` (default) or ``csv``. ``redact=False``
    keeps free-text columns as they are (secret headers are redacted at the source
    regardless; the saved config is redacted unless the experiment was run with it).
    """
    from ._redact import redact_config

    if format not in ("parquet", "csv"):
        raise ConfigError("format", format, "expected 'parquet' or 'csv'")
    path = Path(path)
    check_target(path, overwrite=overwrite)  # fail before writing anything
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / "tables").mkdir()
        tables_meta = {}
        for name in TABLES:
            df = result.tables[name]
            if redact:
                df = _redacted(name, df)
            file = f"tables/{name}.{format}"
            if format == "parquet":
                _write_parquet(df, tmp / file)
            else:
                df.to_csv(tmp / file, index=False, na_rep=CSV_NA)  # so "" and missing stay apart
            tables_meta[name] = {
                "file": file,
                "rows": len(df),
                "sha256": _sha256(tmp / file),
                "columns": {c: str(d) for c, d in df.dtypes.items()},
            }
        meta = dict(result.meta)
        doc = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kit_version": _kit_version(),
            "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "machine": platform.machine(),
            "packages": _versions(),
            "git_commit": _git_commit(),
            "clock_source": CLOCK_SOURCE,
            "redacted": bool(redact),
            "experiment": redact_config(result.config) if redact else result.config,
            "seeds": {
                "experiment": result.config.get("seed"),
                "derivation": "trial_seed = int(sha256(f'{seed}:{cell.conditions_key}:{trial}').hexdigest()[:15], 16) "
                "(conditions_key hashes the cell's scenario and network: every policy meets the same draws); "
                "per-trial seeds are the trials table's seed column; the client sends it as x-kit-trial",
            },
            "run": meta,
            "tables": tables_meta,
        }
        (tmp / BUNDLE_JSON).write_text(json.dumps(_jsonable(doc), indent=2, sort_keys=False))
        swap_in(tmp, path, overwrite=overwrite)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o777 & ~umask)  # mkdtemp made it private; a bundle is for sharing
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Parquet tuned for trace tables: delta-encoded integer clocks, zstd (about 15% smaller than defaults)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    ints = [c for c in df.columns if str(df[c].dtype) == "int64"]
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=9,
        use_dictionary=[c for c in df.columns if c not in ints],
        column_encoding={c: "DELTA_BINARY_PACKED" for c in ints},
    )


def _kit_version() -> str:
    from ._version import __version__

    return __version__


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


# ------------------------------------------------------------------------- loading


def read_manifest(path: str | Path) -> dict[str, Any]:
    """``bundle.json`` of the bundle at ``path``, checked for format and schema version."""
    path = Path(path)
    file = path / BUNDLE_JSON
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle folder")
    if not file.exists():
        hint = ""
        if (path / "trials.jsonl").exists():
            hint = (
                "; the run did not finish: kit.load(path, recover=True) rebuilds a Result from trials.jsonl and parts/"
            )
        raise BundleError(f"{file}: missing (not a finished kit bundle){hint}")
    doc = read_json(file)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(
            f"{file}: not a kit bundle (format is {doc.get('format') if isinstance(doc, dict) else None!r})"
        )
    version = doc.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"{file}: schema_version is missing or not an integer")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{file}: written by a newer kit (bundle schema {version}, this kit reads up to {SCHEMA_VERSION}); "
            f"upgrade kit (the bundle says kit {doc.get('kit_version')})"
        )
    if not isinstance(doc.get("tables"), dict):
        raise BundleError(f"{file}: has no 'tables' section")
    for section in ("experiment", "run"):
        if doc.get(section) is not None and not isinstance(doc[section], dict):
            raise BundleError(f"{file}: the {section!r} section is not an object")
    return doc


def read(path: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any], dict[str, Any]]:
    """The tables, config and run metadata of the bundle at ``path`` (``kit.load`` makes the Result).

    Checks every table's checksum, row count and columns; any problem raises
    :class:`~kit.BundleError` naming the file.
    """
    path = Path(path)
    doc = read_manifest(path)
    tables = {}
    for name in TABLES:
        info = doc["tables"].get(name)
        if info is None and name in LATER_TABLES:  # saved before the table existed: none of its rows
            tables[name] = empty(SCHEMAS[name])
            continue
        if not isinstance(info, dict) or "file" not in info:
            raise BundleError(f"{path / BUNDLE_JSON}: table {name!r} is not listed")
        rel = str(info["file"])
        try:
            file = (path / rel).resolve()
            if path.resolve() not in file.parents:
                raise BundleError(f"{path / BUNDLE_JSON}: table {name!r} points outside the bundle ({rel!r})")
            if not file.is_file():  # a folder (``tables``) or a dangling name is no table
                raise BundleError(f"{path / rel}: missing table {name!r}")
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"{path / BUNDLE_JSON}: table {name!r} has an unusable file name ({exc})") from None
        if info.get("sha256") and _sha256(file) != info["sha256"]:
            raise BundleError(f"{path / rel}: corrupt table {name!r} (checksum does not match bundle.json)")
        columns = check_columns(path / BUNDLE_JSON, name, info.get("columns"), _required_columns(name))
        rows = check_rows(path / BUNDLE_JSON, name, info.get("rows"))
        try:
            if rel.endswith(".parquet"):
                check_parquet(file, name, rows, columns)  # the footer only: nothing decoded yet
                df = pd.read_parquet(file)
            elif rel.endswith(".csv"):
                dtypes = {c: ("str" if d == "str" else d) for c, d in columns.items() if d in ("str", "object")}
                df = pd.read_csv(file, dtype=dtypes, keep_default_na=False, na_values=[CSV_NA])
            else:
                raise BundleError(f"{path / rel}: unknown table format")
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(f"{path / rel}: cannot read table {name!r} ({type(exc).__name__}: {exc})") from None
        if len(df) != rows:
            raise BundleError(f"{path / rel}: {len(df)} rows, bundle.json says {rows}")
        try:
            df = conform(df, columns)
        except KeyError as exc:
            raise BundleError(f"{path / rel}: column {exc.args[0]!r} is missing") from None
        except (ValueError, TypeError, AttributeError, NotImplementedError, OverflowError) as exc:
            raise BundleError(f"{path / rel}: a column has the wrong type ({exc})") from None
        tables[name] = _with_later_columns(name, df)
    return tables, doc.get("experiment") or {}, {**(doc.get("run") or {}), "bundle": _about(doc)}


def _required_columns(name: str) -> dict[str, str] | None:
    """The columns (and dtypes) every bundle's table ``name`` has (the proxy table's vary)."""
    from .tables import FIDELITY_COLUMNS, LATER_COLUMNS, SCHEMAS, TRIAL_HEAD, TRIAL_TAIL

    if name == "trials":
        # the fidelity columns came later: a bundle saved before them still loads (without them)
        return {k: v for k, v in {**TRIAL_HEAD, **TRIAL_TAIL}.items() if k not in FIDELITY_COLUMNS}
    schema = SCHEMAS.get(name)
    if schema is None:
        return None
    return {k: v for k, v in schema.items() if k not in LATER_COLUMNS.get(name, ())}


def _with_later_columns(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """A table of a bundle saved before :data:`kit.tables.LATER_COLUMNS`: those columns, all missing."""
    from .tables import LATER_COLUMNS, SCHEMAS, conform

    later = [c for c in LATER_COLUMNS.get(name, ()) if c not in df.columns]
    if not later:
        return df
    schema = SCHEMAS[name]
    return conform(df.assign(**{c: pd.Series([None] * len(df), dtype="object") for c in later}), schema)


def _about(doc: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "schema_version",
        "kit_version",
        "created_utc",
        "python",
        "platform",
        "git_commit",
        "clock_source",
        "redacted",
    )
    return {k: doc.get(k) for k in keys}


def read_journal(path: Path, config_file: str, journal_file: str) -> tuple[dict[str, Any], list[Any]]:
    """The experiment config and trial records (JSON) of a run that never finished.

    A half-written last line (a trial in flight) is dropped with a warning; any other
    bad line raises :class:`~kit.BundleError` naming the file and line.
    """
    cfg_file, journal = path / config_file, path / journal_file
    for f in (cfg_file, journal):
        if not f.exists():
            raise BundleError(f"{f}: missing; nothing to recover")
    config = read_json(cfg_file)
    records = []
    lines = journal.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = safe_json(line)
            check_depth(record, f"{journal} line {i}")
            records.append(record)
        except BundleError:
            raise
        except ValueError:
            if i == len(lines) or (i == len(lines) - 1 and not lines[-1]):
                warnings.warn(f"{journal}: dropped a half-written last line (a trial in flight)", stacklevel=3)
                continue
            raise BundleError(f"{journal}: line {i} is corrupt") from None
    return config, records
