"""Planner statistics after large loads (PostgreSQL; SQLite keeps none and needs none).

A bulk load of tens of thousands of instances leaves PostgreSQL's statistics describing the
tables as they were before it until autovacuum gets to them (a minute or more later; never,
with autovacuum off). The bulk trigger therefore asks `need_analyze` inside its transaction
and, after its commit, `analyze_instances` gathers fresh statistics when the table has grown by
more than a fifth since it was last analysed (the measure: the PostgreSQL backend).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine

from journeys.store.backends import backend_for


def need_analyze(conn: Connection, added: int) -> bool:
    """True when the instances table holds so many more rows than its statistics describe,
    counting the `added` rows of this transaction, that they should be gathered again."""
    return backend_for(conn).need_analyze(conn, added)


def analyze_instances(engine: Engine) -> bool:
    """Gather fresh statistics of journey_instances, unless another process is doing it right
    now. Returns whether it ran. Never raises: the caller's data is already committed."""
    return backend_for(engine).analyze_instances(engine)
