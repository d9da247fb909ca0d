"""Planner statistics after large loads (PostgreSQL; SQLite keeps none and needs none).

A bulk load of tens of thousands of instances leaves PostgreSQL's statistics describing the
tables as they were before it until autovacuum gets to them (a minute or more later; never,
with autovacuum off). The bulk trigger therefore asks `need_analyze` inside its transaction
and, after its commit, `analyze_instances` gathers fresh statistics when the table has grown by
more than ANALYZE_FRACTION since it was last analysed.

Growth is measured in pages: the table's size now (which includes the rows the transaction has
just written) against its size at the last ANALYZE (`pg_class.relpages`) — exact and current,
where the server's change counters (`n_mod_since_analyze`) arrive up to a second or more late
and would count a load's rows again after the ANALYZE it caused.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("journeys.store")

ANALYZE_FRACTION = 0.2  # of the rows the statistics describe
ANALYZE_MIN_ROWS = 1_000  # below this, plans do not depend on statistics
# Only journey_instances: searches' plans no longer depend on instance_parameters' statistics
# (their shape fixes them), and analysing it costs four times as much (1,000,000 instances:
# 0.5 s against 2.4 s, warm).
ANALYZED_TABLES = ("journey_instances",)
_ADVISORY_KEY = 0x6A6F75726E6579  # one ANALYZE at a time across processes; others skip

_SIZES = sa.text(
    "SELECT c.reltuples, c.relpages, pg_relation_size(c.oid) / current_setting('block_size')::int, "
    "coalesce(s.n_live_tup, 0) FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
    "WHERE c.oid = 'journey_instances'::regclass"
)


def need_analyze(conn: Connection, added: int) -> bool:
    """True when the instances table holds more than ANALYZE_FRACTION more rows (at least
    ANALYZE_MIN_ROWS) than its statistics describe, counting the `added` rows of this
    transaction."""
    if conn.dialect.name != "postgresql" or added <= 0:
        return False
    reltuples, relpages, pages, live = conn.execute(_SIZES).one()
    if float(reltuples) < 0 or int(relpages) == 0:  # never analysed
        return int(live) + added >= ANALYZE_MIN_ROWS
    now = float(reltuples) * int(pages) / int(relpages)  # what the planner itself assumes
    grown = now - float(reltuples)
    return grown >= max(ANALYZE_MIN_ROWS, ANALYZE_FRACTION * float(reltuples))


def analyze_instances(engine: Engine) -> bool:
    """ANALYZE journey_instances, unless another process is analysing it right now.
    Returns whether it ran. Never raises: the caller's data is already committed."""
    if engine.dialect.name != "postgresql":
        return False
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
            if not conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({_ADVISORY_KEY})").scalar():
                return False
            conn.exec_driver_sql(f"ANALYZE {', '.join(ANALYZED_TABLES)}")
        return True
    except Exception as exc:  # statistics are an optimisation; report the class only
        log.warning("ANALYZE after a bulk load failed: %s", type(exc).__name__)
        return False
