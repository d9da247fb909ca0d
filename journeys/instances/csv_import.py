"""Starting a journey for the rows of a spreadsheet (a CSV file): `journeys trigger --csv`.

Reading and mapping the file is here; validating and writing is the bulk trigger's own
(`instances.trigger.trigger`), chunk by chunk, so the rules and messages are the API's. Each
chunk is one call in the caller's transaction; nothing here commits. The API's messages name
`instances[i]`: they are rewritten to the CSV's line numbers ("row 7: …")."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from journeys.catalog.service import JourneyVersion
from journeys.definitions.model import JourneyDefinition
from journeys.instances.trigger import TriggerError, trigger
from journeys.keys.phi import OrgPhi

MAX_FILE_BYTES = 50 * 1024 * 1024
CHUNK = 10_000
_FIRST = re.compile(r"instances\[(\d+)\](?:\.parameters\.|: )")
_INDEX = re.compile(r"instances\[(\d+)\]")


class CsvProblem(ValueError):
    """The file cannot be used at all (a usage error): empty, no header, duplicate headers…"""


@dataclass(frozen=True)
class CsvRow:
    line: int  # the CSV's line number where the row starts (the header is line 1)
    parameters: tuple[tuple[str, str], ...]  # (parameter name, value), empty cells left out


@dataclass(frozen=True)
class Rejected:
    line: int
    messages: tuple[str, ...]


@dataclass(frozen=True)
class ChunkResult:
    batch_id: str | None
    triggered: int
    rejected: tuple[Rejected, ...]


def decode(data: bytes) -> str:
    """The file's text: UTF-8 (a BOM tolerated), not empty, at most MAX_FILE_BYTES."""
    if len(data) > MAX_FILE_BYTES:
        raise CsvProblem(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; split it")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvProblem(f"the file is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise CsvProblem("the file is empty")
    return text


def read_header(data: bytes) -> list[str]:
    """The names of the file's columns (its first line), as written."""
    reader = csv.reader(io.StringIO(decode(data), newline=""))
    try:
        names = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise CsvProblem(f"line 1: {exc}") from None
    if not any(names):
        raise CsvProblem("line 1 must be a header row naming the columns")
    lowered = [n.lower() for n in names]
    dupes = sorted({n for n in names if n and lowered.count(n.lower()) > 1})
    if dupes:
        raise CsvProblem(f"duplicate column headers: {', '.join(dupes)}")
    return names


def read_rows(
    data: bytes,
    defn: JourneyDefinition,
    overrides: Sequence[tuple[str, str]] = (),
    chosen: Mapping[str, str] | None = None,
) -> list[CsvRow]:
    """Parse a UTF-8 CSV (a BOM tolerated) with a header row, mapping columns to parameters:
    same-named columns and `overrides`, or exactly as `chosen` (parameter -> column) says."""
    reader = csv.reader(io.StringIO(decode(data), newline=""))
    header = next(reader)
    columns = map_columns(header, defn, overrides) if chosen is None else choose_columns(header, defn, chosen)
    rows: list[CsvRow] = []
    try:
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not any(c.strip() for c in cells):
                continue  # blank line
            params = tuple((columns[i], c) for i, c in enumerate(cells) if i in columns and c != "")
            rows.append(CsvRow(line, params))
    except csv.Error as exc:
        raise CsvProblem(f"line {reader.line_num}: {exc}") from None
    return rows


def same_named(header: Sequence[str], defn: JourneyDefinition) -> dict[str, str]:
    """Parameter name -> the column with the same name (case-insensitive), where there is one."""
    by_lower = {h.strip().lower(): h.strip() for h in header if h.strip()}
    return {p.name: by_lower[p.name.lower()] for p in defn.parameters if p.name.lower() in by_lower}


def choose_columns(
    header: Sequence[str], defn: JourneyDefinition, chosen: Mapping[str, str]
) -> dict[int, str]:
    """Column index -> parameter name, exactly as `chosen` (parameter -> column header) says;
    every required parameter must have a column."""
    names = [h.strip() for h in header]
    if not any(names):
        raise CsvProblem("line 1 must be a header row naming the columns")
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if dupes:
        raise CsvProblem(f"duplicate column headers: {', '.join(dupes)}")
    params = {p.name: p for p in defn.parameters}
    columns: dict[int, str] = {}
    for param, column in chosen.items():
        if param not in params:
            raise CsvProblem(f"the journey has no parameter {param!r}")
        if column not in names:
            raise CsvProblem(f"{param}: no column {column!r} in the header")
        index = names.index(column)
        if index in columns:
            raise CsvProblem(f"the column {column!r} is chosen for both {columns[index]} and {param}")
        columns[index] = param
    missing = [p.name for p in defn.parameters if p.required and p.name not in chosen]
    if missing:
        raise CsvProblem(
            f"choose a column for the required parameter{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}"
        )
    return columns


def map_columns(
    header: list[str], defn: JourneyDefinition, overrides: Sequence[tuple[str, str]]
) -> dict[int, str]:
    """Column index -> parameter name: a header equal to a parameter's name (case-insensitive),
    or as `overrides` (column header, parameter name) say."""
    names = [h.strip() for h in header]
    if not any(names):
        raise CsvProblem("line 1 must be a header row naming the columns")
    lowered = [n.lower() for n in names]
    dupes = sorted({n for n in names if n and lowered.count(n.lower()) > 1})
    if dupes:
        raise CsvProblem(f"duplicate column headers: {', '.join(dupes)}")
    by_lower = {p.name.lower(): p.name for p in defn.parameters}
    columns = {i: by_lower[n] for i, n in enumerate(lowered) if n in by_lower}
    for col, param in overrides:
        if col.lower() not in lowered:
            raise CsvProblem(f"--map {col}={param}: no column {col!r} in the header")
        if param.lower() not in by_lower:
            known = ", ".join(p.name for p in defn.parameters)
            raise CsvProblem(f"--map {col}={param}: the journey has no parameter {param!r} ({known})")
        columns[lowered.index(col.lower())] = by_lower[param.lower()]
    taken = sorted(columns.values())
    if len(taken) != len(set(taken)):
        raise CsvProblem("two columns map to the same parameter; use --map to choose")
    if not columns:
        raise CsvProblem("no column matches a parameter of the journey; use --map COLUMN=PARAMETER")
    return columns


def _to_rows(message: str, rows: Sequence[CsvRow]) -> tuple[int | None, str]:
    """("instances[3].parameters.x: …") -> (index 3, "x: …") with other indexes as rows."""
    m = _FIRST.match(message)
    if m is None:
        return None, message
    rest = _INDEX.sub(lambda n: f"row {rows[int(n.group(1))].line}", message[m.end() :])
    return int(m.group(1)), rest


def trigger_chunk(
    conn: Connection, jv: JourneyVersion, rows: Sequence[CsvRow], tz: str, now: datetime, phi: OrgPhi
) -> ChunkResult:
    """Trigger the rows (at most CHUNK) in `conn`'s transaction: the rows the bulk trigger
    refuses are left out and named; the rest go in one batch. Raises TriggerError for a problem
    that is no row's (nothing of the chunk written then)."""
    remaining = list(rows)
    rejected: dict[int, list[str]] = {}
    while remaining:
        body = {
            "flowId": None,
            "timeZone": tz,
            "instances": [{"parameters": dict(r.parameters)} for r in remaining],
        }
        try:
            result = trigger(conn, jv, body, now, phi=phi, max_instances=CHUNK)
        except TriggerError as exc:
            bad: set[int] = set()
            for message in exc.messages:
                index, text = _to_rows(message, remaining)
                if index is None and message.startswith("more than"):
                    continue  # the rest are found on the next pass
                if index is None:
                    raise
                bad.add(index)
                rejected.setdefault(remaining[index].line, []).append(text)
            if not bad:
                raise
            remaining = [r for i, r in enumerate(remaining) if i not in bad]
            continue
        return ChunkResult(result.batch_id, len(remaining), _rejected(rejected))
    return ChunkResult(None, 0, _rejected(rejected))


def _rejected(by_line: dict[int, list[str]]) -> tuple[Rejected, ...]:
    return tuple(Rejected(line, tuple(msgs)) for line, msgs in sorted(by_line.items()))


def chunks(rows: Sequence[CsvRow]) -> list[Sequence[CsvRow]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]
