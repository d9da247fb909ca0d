"""The SQLite database holds patient data: its file, WAL and shared-memory files are readable by
their owner only (0600), from creation; a file made readable by others before is tightened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from journeys.store.db import create_db_engine
from journeys.store.migrate import upgrade

pytestmark = pytest.mark.same_on_every_database


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_database_and_its_wal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask would make them 0644
    try:
        db = tmp_path / "new.db"
        engine = create_db_engine(f"sqlite:///{db}")
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE scratch (x INTEGER)"))
            conn.execute(sa.text("INSERT INTO scratch VALUES (1)"))
        with engine.connect() as conn:  # the WAL and shared-memory files exist while connected
            conn.execute(sa.text("SELECT count(*) FROM scratch")).scalar_one()
            files = [p for p in tmp_path.iterdir() if p.name.startswith("new.db")]
            assert {p.name for p in files} >= {"new.db", "new.db-wal", "new.db-shm"}
            assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        engine.dispose()
    finally:
        os.umask(old)


def test_an_existing_readable_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engine = create_db_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE scratch (x INTEGER)"))
    engine.dispose()
    os.chmod(db, 0o644)
    engine = create_db_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM scratch")).scalar_one() == 0
    assert _mode(db) == 0o600
    engine.dispose()


def test_a_database_in_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}")
    with pytest.raises(sa.exc.OperationalError, match="unable to open database file"):
        with engine.connect():
            pass
