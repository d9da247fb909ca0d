"""Envelope encryption's foundation (journeys.keys): each org's data key made once and stored
wrapped, values sealed and opened, bound to their org; blind indexes; a wrapped key moved to
another org refused; KEK rotation rewraps every org's keys and old values stay readable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from support.databases import own_database
from support.keys import strong_key

from journeys.ids import new_id
from journeys.keys.envelope import KeyUnavailable, LocalKeyProvider
from journeys.keys.material import secret_bytes
from journeys.keys.service import keyring, rewrap_batch
from journeys.store.db import create_db_engine, transaction
from journeys.store.migrate import upgrade
from journeys.store.tables import org_keys

NOW = datetime(2026, 11, 2, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A database of the module's own: the rotation test rewraps every org's key, and the
    suite's shared database holds keys other tests' servers made with other secrets."""
    with own_database(tmp_path_factory.mktemp("keys")) as url:
        made = create_db_engine(url)
        upgrade(made)
        yield made
        made.dispose()
OLD_SECRET = secret_bytes(strong_key("keys: old secret"))
NEW_SECRET = secret_bytes(strong_key("keys: new secret"))
OLD = LocalKeyProvider(OLD_SECRET)
NEW = LocalKeyProvider(NEW_SECRET, [OLD_SECRET])  # JOURNEYS_PREVIOUS_SECRET_KEYS lists the old one
NEW_ONLY = LocalKeyProvider(NEW_SECRET)


def test_an_orgs_key_is_made_once_and_seals_its_values(engine: Engine) -> None:
    org = new_id()
    with transaction(engine) as conn:
        ring = keyring(conn, OLD, org, NOW)
    sealed = ring.seal("Jane Doe, +15555550123")
    assert b"Jane" not in sealed and b"555" not in sealed
    with transaction(engine) as conn:
        again = keyring(conn, OLD, org, NOW)
        stored = conn.execute(sa.select(org_keys.c.wrapped).where(org_keys.c.org_id == org)).scalars().all()
    assert again.open(sealed) == "Jane Doe, +15555550123"
    assert len(stored) == 1 and ring.keys[1].key not in stored[0]  # stored wrapped, never plain
    assert ring.seal("x") != ring.seal("x")  # a fresh nonce each time
    assert ring.blind("phone", "+15555550123") == again.blind("phone", "+15555550123")
    assert ring.blind("phone", "+15555550123") != ring.blind("name", "+15555550123")


def test_one_orgs_key_opens_nothing_of_another(engine: Engine) -> None:
    a, b = new_id(), new_id()
    with transaction(engine) as conn:
        ring_a, ring_b = keyring(conn, OLD, a, NOW), keyring(conn, OLD, b, NOW)
    with pytest.raises(KeyUnavailable):
        ring_b.open(ring_a.seal("Jane Doe"))
    assert ring_a.blind("phone", "+15555550123") != ring_b.blind("phone", "+15555550123")
    with transaction(engine) as conn:  # swap their wrapped keys in the database
        q = sa.select(org_keys.c.org_id, org_keys.c.wrapped).where(org_keys.c.org_id.in_([a, b]))
        rows = {r.org_id: r.wrapped for r in conn.execute(q)}
        conn.execute(org_keys.update().where(org_keys.c.org_id == a).values(wrapped=rows[b]))
        conn.execute(org_keys.update().where(org_keys.c.org_id == b).values(wrapped=rows[a]))
    with transaction(engine) as conn:
        with pytest.raises(KeyUnavailable, match="does not unwrap"):
            keyring(conn, OLD, a, NOW)
        with pytest.raises(KeyUnavailable, match=f"org {a}|org {b}"):  # rotation names the org
            rewrap_batch(conn, NEW)
    with transaction(engine) as conn:  # put them back (the rotation test rewraps every org's)
        conn.execute(org_keys.update().where(org_keys.c.org_id == a).values(wrapped=rows[a]))
        conn.execute(org_keys.update().where(org_keys.c.org_id == b).values(wrapped=rows[b]))


NOT_SEALED = [b"", b"\x01short", b"\x02" + b"\x00" * 40, b"\x01\x00\x00\x00\x09" + b"\x00" * 40]


@pytest.mark.parametrize("bad", NOT_SEALED)
def test_values_that_are_not_sealed_or_were_changed_are_refused(engine: Engine, bad: bytes) -> None:
    with transaction(engine) as conn:
        ring = keyring(conn, OLD, new_id(), NOW)
    with pytest.raises(KeyUnavailable):
        ring.open(bad)
    sealed = bytearray(ring.seal("Jane Doe"))
    sealed[-1] ^= 1
    with pytest.raises(KeyUnavailable):
        ring.open(bytes(sealed))


def test_a_server_without_the_kek_says_so(engine: Engine) -> None:
    org = new_id()
    with transaction(engine) as conn:
        keyring(conn, OLD, org, NOW)
    with transaction(engine) as conn:
        with pytest.raises(KeyUnavailable, match="JOURNEYS_PREVIOUS_SECRET_KEYS"):
            keyring(conn, NEW_ONLY, org, NOW)


def test_rotation_rewraps_every_orgs_key_and_old_values_stay_readable(engine: Engine) -> None:
    orgs = [new_id() for _ in range(3)]
    with transaction(engine) as conn:
        sealed = {org: keyring(conn, OLD, org, NOW).seal(f"patient of {org}") for org in orgs}
    while True:  # what `journeys keys rotate` does: batches, each committed
        with transaction(engine) as conn:
            if rewrap_batch(conn, NEW) == 0:
                break
    with transaction(engine) as conn:
        kek_ids = set(conn.execute(sa.select(org_keys.c.kek_id).where(org_keys.c.org_id.in_(orgs))).scalars())
        assert kek_ids == {NEW.current_id}
        for org in orgs:
            assert keyring(conn, NEW_ONLY, org, NOW).open(sealed[org]) == f"patient of {org}"
