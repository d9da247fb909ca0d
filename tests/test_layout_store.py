"""One place per database: only journeys/store/backends asks which database it is on.

Every difference between SQLite and PostgreSQL — statements, bulk paths, engine setup, the
meaning of a driver's errors — lives in the backend of each (journeys/store/backends); the rest
of the code calls `backend_for(conn)`. Schema declarations (`postgresql_where=`, type
variants) and the migrations are declarations, not checks, and are not looked at here.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from journeys.store.backends import all_backends, backend_for_url
from journeys.store.backends.base import Backend
from journeys.store.errors import ErrorKind, error_kind

PACKAGE = Path(__file__).resolve().parent.parent / "journeys"
EXEMPT = (PACKAGE / "store" / "backends", PACKAGE / "store" / "migrations")

# What a module that asks which database it is on would contain.
DIALECT_CHECKS = re.compile(
    r"""dialect\.name"""  # conn.dialect.name, engine.dialect.name
    r"""|dialect\s*[!=]=|[!=]=\s*dialect\b"""  # a dialect name passed around and compared
    r"""|[!=]=\s*["'](?:postgresql|postgres|sqlite)["']|["'](?:postgresql|postgres|sqlite)["']\s*[!=]="""
    r"""|startswith\(\s*["'](?:postgres|sqlite)"""  # URL schemes
    r"""|^\s*(?:import|from)\s+(?:psycopg|sqlite3)\b"""  # a driver's own module
    r"""|^\s*from\s+sqlalchemy\.dialects\b|^\s*import\s+sqlalchemy\.dialects\b"""
    r"""|\bsqlstate\b|\bsqlite_errorcode\b""",  # a driver's error codes
    re.MULTILINE,
)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if not any(p.is_relative_to(e) for e in EXEMPT))


def test_only_the_backends_ask_which_database_they_are_on() -> None:
    found = []
    for path in _modules():
        text = path.read_text()
        for m in DIALECT_CHECKS.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {m.group(0).strip()}")
    assert found == [], "database checks outside journeys/store/backends:\n" + "\n".join(found)


def test_the_check_finds_what_it_looks_for() -> None:
    """The pattern is not vacuous: each way of asking is caught."""
    for line in (
        'if conn.dialect.name == "postgresql":',
        'fn = sa.func.instr if dialect == "sqlite" else sa.func.strpos',
        'if url.startswith("sqlite"):',
        "import psycopg",
        "from sqlalchemy.dialects import postgresql",
        'return getattr(exc.orig, "sqlstate", None) == "40P01"',
    ):
        assert DIALECT_CHECKS.search(line), line
    assert not DIALECT_CHECKS.search('postgresql_where=sa.text("status = \'queued\'")')


def test_there_is_one_backend_per_database() -> None:
    names = sorted(b.name for b in all_backends())
    assert names == ["postgresql", "sqlite"]
    assert all(isinstance(b, Backend) for b in all_backends())
    assert backend_for_url("sqlite:///./x.db").name == "sqlite"
    assert backend_for_url("postgresql+psycopg://u@h/db").name == "postgresql"
    with pytest.raises(ValueError, match="unsupported database"):
        backend_for_url("mysql://u@h/db")


def _wrapped(orig: Exception, cls: type[sa.exc.DBAPIError] = sa.exc.OperationalError) -> sa.exc.DBAPIError:
    return cls("SELECT 1", None, orig)


def test_sqlite_errors_are_classified_by_their_code(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as busy:
            other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        holder.close()
    assert error_kind(_wrapped(busy.value)) is ErrorKind.UNAVAILABLE
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(f"file:{tmp_path / 'missing' / 'x.db'}?mode=rw", uri=True)
    assert error_kind(_wrapped(cannot_open.value)) is ErrorKind.UNAVAILABLE
    conn = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as no_table:
        conn.execute("SELECT * FROM nowhere")
    assert error_kind(_wrapped(no_table.value)) is ErrorKind.OTHER
    conn.execute("CREATE TABLE u (x PRIMARY KEY)")
    conn.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as taken:
        conn.execute("INSERT INTO u VALUES (1)")
    assert error_kind(_wrapped(taken.value, sa.exc.IntegrityError)) is ErrorKind.CONFLICT


def test_errors_without_a_driver_error() -> None:
    assert error_kind(ValueError("x")) is ErrorKind.OTHER
    no_driver_error = sa.exc.OperationalError("SELECT 1", None, None)  # type: ignore[arg-type]
    assert error_kind(no_driver_error) is ErrorKind.UNAVAILABLE
    lost = sa.exc.DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True)
    assert error_kind(lost) is ErrorKind.UNAVAILABLE


def test_psycopg_errors_are_classified_by_their_class() -> None:
    import psycopg

    assert error_kind(_wrapped(psycopg.errors.AdminShutdown())) is ErrorKind.UNAVAILABLE
    assert error_kind(_wrapped(psycopg.errors.DeadlockDetected())) is ErrorKind.DEADLOCK
    assert error_kind(_wrapped(psycopg.errors.QueryCanceled())) is ErrorKind.OTHER
    unique = _wrapped(psycopg.errors.UniqueViolation(), sa.exc.IntegrityError)
    assert error_kind(unique) is ErrorKind.CONFLICT
