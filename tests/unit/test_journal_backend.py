"""The one choice of journal backend, shared by the daemon and the command line."""

from __future__ import annotations

from pathlib import Path

from pbxbridge.journal.backend import journal_opener, spool_dir
from pbxbridge.journal.sqlite import SqliteJournal


def test_without_a_url_the_journal_is_sqlite_beside_the_state(tmp_path: Path) -> None:
    state = tmp_path / "state" / "overrides.sqlite"
    store = journal_opener("", state)()
    try:
        assert isinstance(store, SqliteJournal)
        assert store.path == tmp_path / "state" / "journal.sqlite"
    finally:
        store.close()
    assert spool_dir(state) == tmp_path / "state" / "journal-spool"


def test_with_a_url_nothing_is_opened_until_asked(tmp_path: Path) -> None:
    # The opener is lazy: choosing PostgreSQL connects to nothing yet.
    opener = journal_opener("postgresql://nobody@127.0.0.1:1/none", tmp_path / "s.sqlite")
    assert callable(opener)
    assert not (tmp_path / "journal.sqlite").exists()
