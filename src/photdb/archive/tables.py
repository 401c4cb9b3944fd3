"""Read the tables users upload (CSV, ECSV, VOTable, FITS), whole or streamed in chunks.

CSV and ECSV files are streamed: a chunk of rows at a time is parsed with
astropy's fast C reader, so memory stays flat however long the file is (one
record per line). An ECSV header's declared string columns stay strings (an id
like '0123' keeps its zero). ECSV files with serialized mixin columns (an
astropy ``TimeSeries``'s ``Time``, ...) are streamed through astropy's own ECSV
reader, chunk by chunk, so they come back as ``Time`` columns. VOTable and FITS
tables are read whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from astropy.io import ascii
from astropy.table import Column, Table

__all__ = ["TableError", "iter_chunks", "read_table"]

#: Rows per chunk when streaming.
CHUNK_ROWS = 200_000


class TableError(ValueError):
    """A table that cannot be read; the message is one line."""


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_table(path: str | Path, format: str | None = None) -> Table:
    """Read a whole table; the format from ``format`` (astropy's name) or the file name."""
    path = Path(path)
    try:
        if format is not None:
            return Table.read(path, format=format)
        name = path.name.lower()
        if name.endswith(".csv"):
            return Table.read(path, format="ascii.csv")
        if name.endswith((".ecsv", ".ecsv.gz")):
            return Table.read(path, format="ascii.ecsv")
        try:
            return Table.read(path)
        except Exception:  # astropy could not identify it: let ascii guess
            return Table.read(path, format="ascii")
    except OSError as exc:
        raise TableError(f"cannot read ({exc.strerror or _one_line(exc)})") from None
    except Exception as exc:  # astropy raises many types for malformed tables
        raise TableError(f"not a readable table ({_one_line(exc)})") from None


def _kind(path: Path, format: str | None) -> str | None:
    fmt = (format or "").lower()
    name = path.name.lower()
    if fmt in ("csv", "ascii.csv") or (not fmt and name.endswith(".csv")):
        return "csv"
    if fmt in ("ecsv", "ascii.ecsv") or (not fmt and name.endswith(".ecsv")):
        return "ecsv"
    return None


def iter_chunks(
    path: str | Path, *, format: str | None = None, rows: int = CHUNK_ROWS
) -> Iterator[Table]:
    """Yield the table in chunks of at most ``rows`` rows (VOTable and FITS: one chunk).

    Raises
    ------
    TableError
        The file cannot be read or parsed (one line).
    """
    path = Path(path)
    kind = _kind(path, format)
    if kind is None:
        yield read_table(path, format)
        return
    try:
        fh = open(path, encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise TableError(f"cannot read ({exc.strerror or _one_line(exc)})") from None
    with fh:
        try:
            yield from (_csv(fh, rows) if kind == "csv" else _ecsv(fh, rows))
        except TableError:
            raise
        except UnicodeDecodeError as exc:
            raise TableError(f"not UTF-8 text ({_one_line(exc)})") from None
        except Exception as exc:  # astropy raises many types for malformed rows
            raise TableError(f"not a readable table ({_one_line(exc)})") from None


def _lines(fh, rows: int) -> Iterator[list[str]]:
    while True:
        block = [ln for ln in itertools.islice(fh, rows) if ln.strip()]
        if not block:
            return
        yield block


def _csv(fh, rows: int) -> Iterator[Table]:
    header = next((ln for ln in fh if ln.strip()), None)
    if header is None:
        raise TableError("empty file")
    any_rows = False
    for block in _lines(fh, rows):
        any_rows = True
        yield ascii.read([header, *block], format="csv", fast_reader=True, guess=False)
    if not any_rows:
        yield ascii.read([header], format="csv", guess=False)


def _ecsv(fh, rows: int) -> Iterator[Table]:
    head: list[str] = []
    for line in fh:
        head.append(line)
        if not line.startswith("#") and line.strip():
            break  # the column-names line
    first = list(itertools.islice(fh, 1))
    try:
        template = Table.read("".join(head + first), format="ascii.ecsv")
    except Exception as exc:
        raise TableError(f"not a readable ECSV header ({_one_line(exc)})") from None
    # mixins (Time ...), object (json subtype) and multidimensional columns: astropy's reader
    mixins = [
        n
        for n in template.colnames
        if not isinstance(template[n], Column)
        or template[n].dtype.kind == "O"
        or template[n].ndim > 1
    ]
    strings = [n for n in template.colnames if template[n].dtype.kind in "US"] if not mixins else []
    delimiter = "," if any("delimiter: ','" in ln for ln in head) else " "
    names_line = head[-1]
    pending = first
    for block in _lines(fh, rows):
        yield _ecsv_block(head, names_line, pending + block, mixins, strings, delimiter, template)
        pending = []
    if pending or not first:
        yield _ecsv_block(head, names_line, pending, mixins, strings, delimiter, template)


def _ecsv_block(head, names_line, block, mixins, strings, delimiter, template) -> Table:
    if mixins or not block:
        return Table.read("".join(head + block), format="ascii.ecsv")
    # astropy's fast RDB reader takes a line of column types (S string, N number): the
    # ECSV header's declared strings stay strings ('0123' keeps its zero), at C speed
    types = delimiter.join("S" if n in strings else "N" for n in template.colnames)
    table = ascii.read(
        [names_line, types + "\n", *block],
        format="rdb",
        fast_reader=True,
        guess=False,
        delimiter=delimiter,
    )
    table.meta.update(template.meta)
    for name in template.colnames:
        if name in table.colnames and template[name].unit is not None:
            table[name].unit = template[name].unit
    return table
