"""One backend per database, behind one interface (`Backend`, in base.py).

Each backend owns the SQL in which its database differs from the other — claim and update
statements, bulk loading, the shapes that fix search plans, statistics, engine setup, the
meaning of its driver's errors — in one module: sqlite.py, postgresql.py. The store's modules
call `backend_for(conn)`; no other module asks which database it is on (tests/test_layout_store.py).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine, make_url

from journeys.store.backends.base import Backend, CursorUpdateSpec, ErrorKind, Key
from journeys.store.backends.postgresql import PostgreSQLBackend
from journeys.store.backends.sqlite import SQLiteBackend

__all__ = [
    "Backend",
    "CursorUpdateSpec",
    "ErrorKind",
    "Key",
    "all_backends",
    "backend_for",
    "backend_for_url",
    "normalise_url",
]

_BACKENDS: dict[str, Backend] = {b.name: b for b in (SQLiteBackend(), PostgreSQLBackend())}


def backend_for(bind: Connection | Engine) -> Backend:
    """The backend of the database `bind` is connected to."""
    return _BACKENDS[bind.dialect.name]


def normalise_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def backend_for_url(url: str) -> Backend:
    """The backend of a database URL (normalised: `normalise_url`)."""
    name = make_url(url).get_backend_name()
    backend = _BACKENDS.get(name)
    if backend is None:
        raise ValueError(f"unsupported database {name!r}: sqlite or postgresql")
    return backend


def all_backends() -> tuple[Backend, ...]:
    return tuple(_BACKENDS.values())
