"""What a bundle's files must satisfy before kit decodes them: hostile files are data too.

A bundle can come from anyone. Before any table is decoded its manifest entry must name
the expected columns with allowed dtypes, and a Parquet file's own metadata (row count,
uncompressed size, column names: the footer only) must agree with the manifest and stay
under the limits below. JSON files (``bundle.json``, ``experiment.json``, journal lines)
are size- and depth-limited. Every problem is a :class:`~kit.BundleError` naming the file
and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._errors import BundleError
from ._safejson import loads as safe_json

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_TABLE_BYTES",
    "MAX_TABLE_ROWS",
    "check_columns",
    "check_depth",
    "check_parquet",
    "read_json",
]

MAX_TABLE_ROWS = 50_000_000  # rows of one table (a 100k-trial run has a few million chunk rows)
MAX_TABLE_BYTES = 4 << 30  # uncompressed bytes of one Parquet table, from its footer
MAX_JSON_BYTES = 256 << 20  # bundle.json / experiment.json
MAX_JSON_DEPTH = 64  # nesting of any JSON document kit reads back (kit writes fewer than 10 levels)
DTYPES = frozenset({"bool", "boolean", "int64", "Int64", "float64", "Float64", "str", "string", "object"})


def read_json(file: Path) -> Any:
    """The JSON document in ``file`` (size- and depth-checked); BundleError names the file."""
    try:
        size = file.stat().st_size
        if size > MAX_JSON_BYTES:
            raise BundleError(f"{file}: {size:,} bytes, over the limit of {MAX_JSON_BYTES:,} for a JSON file")
        doc = safe_json(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{file}: corrupt JSON ({exc})") from None
    except OSError as exc:
        raise BundleError(f"{file}: cannot read ({exc.strerror or exc})") from None
    check_depth(doc, file)
    return doc


def check_depth(doc: Any, file: Path | str, limit: int = MAX_JSON_DEPTH) -> None:
    """BundleError naming the field where ``doc`` nests deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        obj, where, depth = stack.pop()
        if depth > limit:
            raise BundleError(f"{file}: field {where or '(top)'!r} nests deeper than {limit} levels")
        if isinstance(obj, Mapping):
            stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in obj.items())
        elif isinstance(obj, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj))


def check_columns(manifest: Path, name: str, columns: Any, required: Mapping[str, str] | None) -> dict[str, str]:
    """The manifest's ``columns`` of table ``name``: present, allowed dtypes, the required ones with their dtypes."""
    field = f"tables.{name}.columns"
    if not isinstance(columns, Mapping) or not columns:
        raise BundleError(f"{manifest}: {field} is missing (a bundle lists every table's columns and dtypes)")
    for col, dtype in columns.items():
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise BundleError(f"{manifest}: {field}.{col} has dtype {dtype!r}; allowed: {', '.join(sorted(DTYPES))}")
    for col, dtype in (required or {}).items():
        if col not in columns:
            raise BundleError(f"{manifest}: {field} lacks {col!r} (is this another table's entry?)")
        if columns[col] != dtype:
            raise BundleError(f"{manifest}: {field}.{col} is {columns[col]!r}, expected {dtype!r}")
    return dict(columns)


def check_rows(manifest: Path, name: str, rows: Any) -> int:
    """The manifest's ``rows`` of table ``name``: a whole number within :data:`MAX_TABLE_ROWS`."""
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= MAX_TABLE_ROWS:
        raise BundleError(
            f"{manifest}: tables.{name}.rows={rows!r}; expected a whole number in [0, {MAX_TABLE_ROWS:,}]"
        )
    return rows


def check_parquet(file: Path, name: str, rows: int, columns: Mapping[str, str]) -> None:
    """Compare a Parquet file's footer with the manifest before decoding any data."""
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(file) as pf:
            md = pf.metadata
            names = list(pf.schema_arrow.names)
            n_rows = md.num_rows
            size = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    except Exception as exc:
        raise BundleError(f"{file}: cannot read table {name!r} ({type(exc).__name__}: {exc})") from None
    if n_rows != rows:
        raise BundleError(f"{file}: the file holds {n_rows:,} rows, bundle.json says {rows:,} (not decoded)")
    if size > MAX_TABLE_BYTES:
        raise BundleError(f"{file}: {size:,} bytes uncompressed, over the limit of {MAX_TABLE_BYTES:,} (not decoded)")
    if set(names) != set(columns):
        extra, missing = sorted(set(names) - set(columns)), sorted(set(columns) - set(names))
        raise BundleError(
            f"{file}: columns do not match bundle.json (extra: {extra or 'none'}; missing: {missing or 'none'})"
        )
