"""Every table pbxbridge keeps, as versioned migrations: the one place to change a schema.

Three databases, three tuples of migrations:

* :data:`JOURNAL_SQLITE_MIGRATIONS`: a node's journal file (``journal.sqlite``),
  version in ``PRAGMA user_version``; run by
  :class:`~pbxbridge.journal.sqlite.SqliteJournal`.
* :data:`OVERRIDES_SQLITE_MIGRATIONS`: a node's state file (overrides and
  virtual holds), version in ``PRAGMA user_version``; run by
  :class:`~pbxbridge.storage.overrides.SqliteOverrideStore` and
  :class:`~pbxbridge.storage.virtual_holds.SqliteVirtualHoldStore`, whichever
  opens it first.
* :data:`POSTGRES_MIGRATIONS`: the database several nodes share, journal,
  overrides and virtual holds together, version in the ``schema_version`` table; run by
  :func:`~pbxbridge.storage.postgres.migrate_postgres` whichever store opens it
  first.

The journal's ``calls`` table:

One table row per call, updated in place as the call goes on
(upsert on ``(node, call_id)``). Times are stored as UTC: SQLite as REAL Unix
seconds (fast range scans and arithmetic), PostgreSQL as ``timestamptz``.
Overrides in PostgreSQL get a table beside the calls, so that several nodes
sharing the database share one set of overrides.

Columns:

====================  ======================================================
node, call_id         primary key (several Asterisk nodes share one journal)
tenant                tenant id ("" for rejected calls without tenant)
did                   dialled number, E.164 where possible
caller                E.164 or NULL (withheld, or removed by retention)
via_115               arrived on a 115 number
action                routing action: queue, closed, reject
reasons               JSON list of the decision's trace ("[]" once purged)
arrived_at            routed (the call's arrival at pbxbridge)
queued_at             joined the queue
answered_at           an agent answered
ended_at              ended (hangup, abandon)
outcome               in_progress, answered, abandoned, closed, rejected, unanswered
agent                 who answered (or was last rung)
queue                 queue joined
wait_s                seconds waited until answer or abandon
talk_s                seconds of conversation
rings                 JSON list of ring attempts
disposition           NULL, "resolved" (first contact) or "callback"
disposition_at        when the agent recorded it
disposition_by        the agent
disposition_note      short note (max 500 characters; free text, purged)
callback_number       number to call back (E.164; personal data, purged)
callback_due_at       end of the next working day (tenant's calendar)
callback_done_at      when the callback was marked done
purged_at             when retention removed the personal data
menu_digit            115 menu digit pressed ("" timed out, NULL no menu); kept
====================  ======================================================

A migration, once released, is never edited: databases out there have applied
it. Changes go into a new one, appended to the tuple of each database it concerns.
"""

from __future__ import annotations

JOURNAL_SQLITE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE calls (
        node TEXT NOT NULL,
        call_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        did TEXT NOT NULL,
        caller TEXT,
        via_115 INTEGER NOT NULL,
        action TEXT NOT NULL,
        reasons TEXT NOT NULL,
        arrived_at REAL NOT NULL,
        queued_at REAL,
        answered_at REAL,
        ended_at REAL,
        outcome TEXT NOT NULL,
        agent TEXT NOT NULL,
        queue TEXT NOT NULL,
        wait_s REAL,
        talk_s REAL,
        rings TEXT NOT NULL,
        disposition TEXT,
        disposition_at REAL,
        disposition_by TEXT,
        disposition_note TEXT,
        callback_number TEXT,
        callback_due_at REAL,
        callback_done_at REAL,
        purged_at REAL,
        PRIMARY KEY (node, call_id)
    );
    CREATE INDEX calls_arrived ON calls (arrived_at, tenant);
    CREATE INDEX calls_caller ON calls (caller, arrived_at) WHERE caller IS NOT NULL;
    CREATE INDEX calls_callbacks ON calls (tenant, callback_due_at)
        WHERE disposition = 'callback' AND callback_done_at IS NULL;
    CREATE TABLE overrides (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
        reason TEXT NOT NULL,
        set_at REAL NOT NULL,
        expires_at REAL,
        set_by TEXT NOT NULL DEFAULT '',
        cleared_at REAL,
        cleared_by TEXT
    );
    """,
    # 2: the purge finds its next batch in an index of the calls not purged
    # yet (it shrinks as they are purged, so batches stay cheap on any
    # backlog); reports find callbacks by deadline, however old the call.
    """
    CREATE INDEX calls_unpurged ON calls (arrived_at) WHERE purged_at IS NULL;
    CREATE INDEX calls_callback_due ON calls (callback_due_at, tenant)
        WHERE disposition = 'callback';
    """,
    # 3: migration 1 created an ``overrides`` table here that nothing ever
    # read or wrote: a node's SQLite overrides live in the state file
    # (OVERRIDES_SQLITE_MIGRATIONS), only PostgreSQL keeps them beside the
    # journal. Dropped, so that each backend has one definition of them.
    """
    DROP TABLE IF EXISTS overrides;
    """,
    # 4: the 115 menu digit, so that ``pbxbridge replay`` routes a menu call
    # again as it went (not personal data: the purge keeps it).
    """
    ALTER TABLE calls ADD COLUMN menu_digit TEXT;
    """,
)

POSTGRES_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE calls (
        node TEXT NOT NULL,
        call_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        did TEXT NOT NULL,
        caller TEXT,
        via_115 BOOLEAN NOT NULL,
        action TEXT NOT NULL,
        reasons TEXT NOT NULL,
        arrived_at TIMESTAMPTZ NOT NULL,
        queued_at TIMESTAMPTZ,
        answered_at TIMESTAMPTZ,
        ended_at TIMESTAMPTZ,
        outcome TEXT NOT NULL,
        agent TEXT NOT NULL,
        queue TEXT NOT NULL,
        wait_s DOUBLE PRECISION,
        talk_s DOUBLE PRECISION,
        rings TEXT NOT NULL,
        disposition TEXT,
        disposition_at TIMESTAMPTZ,
        disposition_by TEXT,
        disposition_note TEXT,
        callback_number TEXT,
        callback_due_at TIMESTAMPTZ,
        callback_done_at TIMESTAMPTZ,
        purged_at TIMESTAMPTZ,
        PRIMARY KEY (node, call_id)
    );
    CREATE INDEX calls_arrived ON calls (arrived_at, tenant);
    CREATE INDEX calls_caller ON calls (caller, arrived_at) WHERE caller IS NOT NULL;
    CREATE INDEX calls_callbacks ON calls (tenant, callback_due_at)
        WHERE disposition = 'callback' AND callback_done_at IS NULL;
    CREATE TABLE overrides (
        id BIGSERIAL PRIMARY KEY,
        scope TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
        reason TEXT NOT NULL,
        set_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ,
        set_by TEXT NOT NULL DEFAULT '',
        cleared_at TIMESTAMPTZ,
        cleared_by TEXT
    );
    """,
    # 2: as SQLite's. Not CONCURRENTLY (migrations run in one transaction);
    # both indexes are partial and built in seconds on a million calls.
    """
    CREATE INDEX calls_unpurged ON calls (arrived_at) WHERE purged_at IS NULL;
    CREATE INDEX calls_callback_due ON calls (callback_due_at, tenant)
        WHERE disposition = 'callback';
    """,
    # 3: as SQLite's 4.
    """
    ALTER TABLE calls ADD COLUMN menu_digit TEXT;
    """,
    # 4: pending and finished virtual holds, shared by the nodes (the columns
    # are those of the state file's virtual_holds, times as timestamptz).
    """
    CREATE TABLE virtual_holds (
        node TEXT NOT NULL,
        call_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL,
        position INTEGER NOT NULL,
        caller TEXT,
        number TEXT,
        dial TEXT NOT NULL,
        state TEXT NOT NULL,
        arrived_at TIMESTAMPTZ NOT NULL,
        offered_at TIMESTAMPTZ NOT NULL,
        offers INTEGER NOT NULL,
        last_offer_waited_s DOUBLE PRECISION,
        accepted_at TIMESTAMPTZ,
        placeholder_answered_at TIMESTAMPTZ,
        agent TEXT NOT NULL,
        attempts TEXT NOT NULL,
        next_try_at TIMESTAMPTZ,
        connected_at TIMESTAMPTZ,
        ticket_due_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        events TEXT NOT NULL,
        purged_at TIMESTAMPTZ,
        PRIMARY KEY (node, call_id)
    );
    CREATE INDEX virtual_holds_pending ON virtual_holds (node)
        WHERE state IN ('accepted', 'waiting', 'agent_reached', 'calling', 'retry_wait');
    CREATE INDEX virtual_holds_arrived ON virtual_holds (arrived_at, tenant);
    CREATE INDEX virtual_holds_number ON virtual_holds (number) WHERE number IS NOT NULL;
    """,
)


OVERRIDES_SQLITE_MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE overrides (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        scope       TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('open', 'closed')),
        reason      TEXT NOT NULL,
        set_at      TEXT NOT NULL,
        expires_at  TEXT,
        set_by      TEXT NOT NULL DEFAULT '',
        cleared_at  TEXT,
        cleared_by  TEXT
    );
    CREATE INDEX overrides_live ON overrides (cleared_at, expires_at);
    """,
    # 2: a node's pending and finished virtual holds (the state file is the
    # node's durable operational state; the journal file may lag behind its
    # writer). Times as REAL Unix seconds like the journal's; columns in
    # :mod:`pbxbridge.storage.virtual_holds`.
    """
    CREATE TABLE virtual_holds (
        node TEXT NOT NULL,
        call_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL,
        position INTEGER NOT NULL,
        caller TEXT,
        number TEXT,
        dial TEXT NOT NULL,
        state TEXT NOT NULL,
        arrived_at REAL NOT NULL,
        offered_at REAL NOT NULL,
        offers INTEGER NOT NULL,
        last_offer_waited_s REAL,
        accepted_at REAL,
        placeholder_answered_at REAL,
        agent TEXT NOT NULL,
        attempts TEXT NOT NULL,
        next_try_at REAL,
        connected_at REAL,
        ticket_due_at REAL,
        updated_at REAL NOT NULL,
        events TEXT NOT NULL,
        purged_at REAL,
        PRIMARY KEY (node, call_id)
    );
    CREATE INDEX virtual_holds_pending ON virtual_holds (node)
        WHERE state IN ('accepted', 'waiting', 'agent_reached', 'calling', 'retry_wait');
    CREATE INDEX virtual_holds_arrived ON virtual_holds (arrived_at, tenant);
    CREATE INDEX virtual_holds_number ON virtual_holds (number) WHERE number IS NOT NULL;
    """,
)

JOURNAL_SQLITE_VERSION = len(JOURNAL_SQLITE_MIGRATIONS)
"""The journal file's current ``user_version``."""
POSTGRES_VERSION = len(POSTGRES_MIGRATIONS)
"""The shared database's current ``schema_version``."""
