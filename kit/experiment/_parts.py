"""Parquet parts: the tables of a chunk's trials, built in the worker that ran them.

At the end of a chunk a worker turns the trials it did not stream to the driver into
the Result tables (:func:`kit.tables.build`, the driver's own code, so the dtypes are
the same) and returns each table as Parquet bytes in its ``ChunkResult``
(:func:`encode`). When the run's folder is reachable from the worker it also writes
them as ``parts/part-<chunk>/<table>.parquet``: into a hidden folder first, renamed
when every table is in it, so a half-written part is never read (:func:`write`). The
driver decodes them (:func:`decode`) and merges them with the records it was streamed
(:func:`kit.tables.merge`): the tables equal those of a single-process run.

Reading a part is Parquet only (nothing pickled): the footer is checked first (rows,
uncompressed size, columns), then the columns get the kit's dtypes. A part that does
not pass is a :class:`~kit.BundleError` naming the file. :func:`read_folder` reads what a
run folder's ``parts/`` holds after a crash: the finished parts and the chunks'
JSON-line journals (one line per finished trial, written as each finished).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .._bundle_checks import MAX_TABLE_BYTES, MAX_TABLE_ROWS, check_depth
from .._errors import BundleError
from .._safejson import loads as safe_json
from ..tables import SCHEMAS, TRIAL_HEAD, TRIAL_TAIL, conform

__all__ = ["PART_TABLES", "decode", "encode", "part_name", "read_folder", "read_lines", "read_part", "remove", "write"]

PART_TABLES = ("trials", *SCHEMAS)  # every table but proxy (its logs come per worker, not per trial)
_FIXED = {**TRIAL_HEAD, **TRIAL_TAIL}  # the trials columns a part must have (parameters: rebuilt from the cells)


def part_name(index: int) -> str:
    return f"part-{index:05d}"


def encode(tables: Mapping[str, pd.DataFrame]) -> dict[str, bytes]:
    """Each table of a chunk's trials as Parquet bytes (lz4, no dictionaries: read once, soon; the fastest to write and read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {}
    for name in PART_TABLES:
        buf = io.BytesIO()
        pq.write_table(
            pa.Table.from_pandas(tables[name], preserve_index=False), buf, compression="lz4", use_dictionary=False
        )
        out[name] = buf.getvalue()
    return out


def decode(blobs: Mapping[str, Any], where: str) -> dict[str, pd.DataFrame]:
    """The tables of one part: ``blobs`` maps a table name to Parquet bytes or a file path.

    Any problem (a table missing, a corrupt file, a column missing or of the wrong
    type, over the size limits) raises :class:`~kit.BundleError` naming ``where``.
    """
    if not isinstance(blobs, Mapping):
        raise BundleError(f"{where}: not a part (expected one Parquet table per name, got {type(blobs).__name__})")
    tables = {}
    for name in PART_TABLES:
        if name not in blobs:
            raise BundleError(f"{where}: table {name!r} is missing")
        tables[name] = _table(blobs[name], name, f"{where}/{name}.parquet" if isinstance(blobs[name], bytes) else None)
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = tables["trials"]["trial_id"]
    if ids.duplicated().any():
        raise BundleError(f"{where}: a trial id appears twice in its trials table")
    held = pa.array(ids)
    for name in SCHEMAS:
        tid = pa.array(tables[name]["trial_id"])
        stray = pc.invert(pc.is_in(tid, value_set=held))
        if pc.any(stray).as_py():
            first = pc.filter(tid, stray)[0].as_py()
            raise BundleError(f"{where}: table {name!r} has rows of trials it does not hold ({first!r})")
    return tables


def _table(source: Any, name: str, label: str | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    label = label or str(source)
    schema = _FIXED if name == "trials" else SCHEMAS[name]
    try:
        handle = pa.BufferReader(source) if isinstance(source, bytes) else str(source)
        with pq.ParquetFile(handle) as pf:
            md = pf.metadata
            size = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
            if md.num_rows > MAX_TABLE_ROWS or size > MAX_TABLE_BYTES:
                raise BundleError(f"{label}: {md.num_rows:,} rows, {size:,} bytes uncompressed: over the limits")
            names = set(pf.schema_arrow.names)
            missing = [c for c in schema if c not in names]
            if missing:
                raise BundleError(f"{label}: column {missing[0]!r} is missing (not decoded)")
            df = pf.read(columns=list(schema)).to_pandas()
        return conform(df, schema)
    except BundleError:
        raise
    except Exception as exc:  # corrupt bytes, a column of the wrong type
        raise BundleError(f"{label}: cannot read part table {name!r} ({type(exc).__name__}: {exc})") from None


def write(folder: Path, index: int, blobs: Mapping[str, bytes]) -> Path | None:
    """Write one part as ``folder/part-<index>/<table>.parquet`` (complete or not at all).

    Returns its path, or None when ``folder`` is not there (a worker on another
    machine). A part already there (the same chunk, run again) is kept.
    """
    if not folder.is_dir():
        return None
    final = folder / part_name(index)
    if final.exists():
        return final
    tmp = folder / f".{part_name(index)}.{os.getpid()}.tmp"
    try:
        tmp.mkdir()
        for name, data in blobs.items():
            (tmp / f"{name}.parquet").write_bytes(data)
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return final if final.exists() else None
    return final


def read_part(path: Path) -> dict[str, pd.DataFrame]:
    """The tables of the part folder ``path`` (see :func:`decode`)."""
    return decode(
        {name: path / f"{name}.parquet" for name in PART_TABLES if (path / f"{name}.parquet").is_file()}, str(path)
    )


def read_folder(folder: Path) -> tuple[list[Any], list[dict[str, pd.DataFrame]]]:
    """(trial records of the chunks' journals, tables of the finished parts) under ``folder``.

    A chunk journal's half-written last line (a trial in flight) is dropped with a
    warning; a corrupt part or journal line raises :class:`~kit.BundleError` naming the
    file (and nothing in the folder is changed: move it aside to recover the rest).
    """
    if not folder.is_dir():
        return [], []
    parts = [read_part(p) for p in sorted(folder.glob("part-*")) if p.is_dir()]
    records: list[Any] = []
    for journal in sorted(folder.glob("chunk-*.jsonl")):
        records.extend(read_lines(journal))
    return records, parts


def read_lines(journal: Path) -> list[Any]:
    """The records (JSON objects) of a chunk's journal; see :func:`read_folder`."""
    try:
        lines = journal.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{journal}: cannot read ({exc})") from None
    out = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = safe_json(line)
        except ValueError:
            if i == last:
                warnings.warn(f"{journal}: dropped a half-written last line (a trial in flight)", stacklevel=3)
                continue
            raise BundleError(f"{journal}: line {i + 1} is corrupt") from None
        check_depth(record, f"{journal} line {i + 1}")
        if not isinstance(record, dict):
            raise BundleError(f"{journal}: line {i + 1} is not a trial record")
        out.append(record)
    return out


def remove(path: str | os.PathLike[str] | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.remove(path)
