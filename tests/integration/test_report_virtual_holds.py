"""``pbxbridge report --format csv|invoice`` with virtual holds, as an operator runs it.

The real command in its own process reads the calls from the journal and the
holds from the store the daemon writes: the node's SQLite files, or the
machine's PostgreSQL (127.0.0.1:5432) with ``PBXBRIDGE_DATABASE_URL``. The
expected figures are worked out by hand below.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pbxbridge.journal.backend import journal_opener
from pbxbridge.journal.entry import Outcome
from pbxbridge.storage.virtual_holds import open_virtual_hold_store
from tests.postgres import SKIP, throwaway_database
from tests.unit.test_journal_store import entry
from tests.unit.test_journal_virtual_holds import T0, accepted, connected, hold, ticket

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-03-12"  # T0 is 09:00 that Thursday in Berlin
VH = (
    "virtual_hold_offered", "virtual_hold_accepted", "virtual_hold_connected",
    "virtual_hold_failed", "virtual_hold_pending", "virtual_hold_mean_to_connect_s",
    "virtual_hold_p90_to_connect_s",
)  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of the CLI, with the journal and holds already written."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PBXBRIDGE_")}
    base["STATE_DIRECTORY"] = str(tmp_path / "state")
    if request.param == "sqlite":
        yield _filled(base, "", tmp_path)
        return
    if SKIP:
        pytest.skip("PBXBRIDGE_SKIP_POSTGRES=1: PostgreSQL tests skipped")
    with throwaway_database() as url:
        yield _filled({**base, "PBXBRIDGE_DATABASE_URL": url}, url, tmp_path)


def _filled(env: dict[str, str], url: str, tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state" / "pbxbridge.sqlite"
    state.parent.mkdir(exist_ok=True)
    rows = [
        # answered after 10 s: within 20 s
        entry("fast", arrived_at=T0, queued_at=T0, answered_at=T0 + timedelta(seconds=10),
              outcome=Outcome.ANSWERED, wait_s=10.0, agent="anna"),
        # left the queue for a callback after 70 s; the citizen was connected at 400 s
        entry("cb", arrived_at=T0, queued_at=T0, ended_at=T0 + timedelta(seconds=70),
              outcome=Outcome.ABANDONED, wait_s=70.0),
        # left after 80 s; the callback became a ticket
        entry("tk", arrived_at=T0, queued_at=T0, ended_at=T0 + timedelta(seconds=80),
              outcome=Outcome.ABANDONED, wait_s=80.0),
    ]  # fmt: skip
    with journal_opener(url, state)() as journal:
        journal.upsert(rows)
    with open_virtual_hold_store(url, state) as store:
        # accepted at 70 s, connected at 400 s: 330 s from request to connection
        assert store.save(connected(accepted(hold("cb")), 400))
        assert store.save(ticket(accepted(hold("tk"))))
    shutil.copy(REPO / "config" / "routing.yaml", tmp_path / "routing.yaml")
    env["PBXBRIDGE_CONFIG"] = str(tmp_path / "routing.yaml")
    return env


def report(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pbxbridge", "report", "--from", DAY, "--to", DAY, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_csv_has_the_virtual_hold_columns(env: dict[str, str]) -> None:
    text = report(env, "--format", "csv")
    assert text.startswith("\ufefftenant;")
    rows = list(csv.DictReader(io.StringIO(text[1:], newline=""), delimiter=";"))
    (total,) = [r for r in rows if r["tenant"] == "wardenburg" and r["bucket"] == "total"]
    # the callback counts as answered (wait 400 s: outside 20 s), the ticket as neither
    assert (total["offered"], total["answered"], total["answered_within"]) == ("3", "2", "1")
    assert (total["abandoned"], total["other_offered"]) == ("0", "1")
    assert [total[c] for c in VH] == ["2", "2", "1", "1", "0", "330,0", "330,0"]
    assert list(rows[0])[-7:] == list(VH)  # after every older column


def test_invoice_has_the_virtual_hold_columns(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "wardenburg.csv"
    report(env, "--tenant", "wardenburg", "--by", "day", "--format", "invoice", "-o", str(out))
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfMandant;")  # German Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    summe = dict(zip(rows[0], rows[-1], strict=True))
    assert summe["Zeitraum"] == "Summe"
    assert summe["Rückruf statt Warten angeboten"] == "2"
    assert summe["Rückruf statt Warten verbunden"] == "1"
    assert summe["Rückruf statt Warten nicht erreicht (Rückrufauftrag)"] == "1"
    assert summe["Mittlere Zeit bis Rückruf (s)"] == "330,0"
    assert summe["Angenommen"] == "2"
