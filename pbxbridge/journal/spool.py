"""The journal writer's spool: entries the database could not take yet, on disk.

The line format (:func:`entry_to_json`, one JSON object per line, ASCII, with
the format version ``v``), the append-only segments the writer replays oldest
first (:class:`_Spool`), and ``rejected.jsonl``, where entries the database
refused for good wait for an operator and age out with the retention
(:func:`age_rejected`). How and when the writer spools is
:mod:`pbxbridge.journal.writer`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

import structlog

from pbxbridge.journal.entry import JournalEntry

# The writer's logger: these lines were the writer's before the spool had a
# module of its own, and log filters may select them by that name.
log = structlog.get_logger("pbxbridge.journal.writer")

Key = tuple[str, str]
"""``(node, call_id)``: one journal row."""

SPOOL_FORMAT: Final = 1
"""Version of the spool line format (``"v"`` in every line)."""

REJECTED_FILE: Final = "rejected.jsonl"
"""Entries the database refused for good (in the spool directory)."""

_SEGMENT = re.compile(r"^journal-(\d{12})\.jsonl$")


# ------------------------------------------------------------------ spool format


def _in_utc(value: datetime, name: str) -> datetime:
    """``value`` as a UTC datetime: an instant, not a wall-clock reading in some zone.

    Raises:
        ValueError: If ``value`` is naive, or no datetime can hold it in UTC:
            near ``datetime.min``/``max`` a local time may lie outside the
            range in UTC (``datetime(1, 1, 1, tzinfo=Europe/Berlin)`` is
            0000-12-31 23:06:32 UTC), where ``astimezone`` raises OverflowError.
    """
    if value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} has no time zone")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name} {value.isoformat()} is out of range in UTC") from None


def _time_text(value: datetime | None, name: str) -> str | None:
    return None if value is None else _in_utc(value, name).isoformat()


def _time_value(value: Any, name: str) -> datetime | None:
    return None if value is None else _in_utc(datetime.fromisoformat(str(value)), name)


def entry_to_json(entry: JournalEntry) -> dict[str, Any]:
    """An entry as a JSON-ready dict (the spool's line format).

    Args:
        entry: The entry.

    Returns:
        A dict with ISO 8601 UTC times and the format version ``v``.

    Raises:
        ValueError: If a time is naive or out of range in UTC.
    """
    return {
        "v": SPOOL_FORMAT,
        "node": entry.node,
        "call_id": entry.call_id,
        "tenant": entry.tenant,
        "did": entry.did,
        "caller": entry.caller,
        "via_115": entry.via_115,
        "action": entry.action,
        "reasons": list(entry.reasons),
        "arrived_at": _time_text(entry.arrived_at, "arrived_at"),
        "queued_at": _time_text(entry.queued_at, "queued_at"),
        "answered_at": _time_text(entry.answered_at, "answered_at"),
        "ended_at": _time_text(entry.ended_at, "ended_at"),
        "outcome": entry.outcome,
        "agent": entry.agent,
        "queue": entry.queue,
        "wait_s": entry.wait_s,
        "talk_s": entry.talk_s,
        "rings": list(entry.rings),
        "menu_digit": entry.menu_digit,
    }


def entry_from_json(data: dict[str, Any]) -> JournalEntry:
    """The entry :func:`entry_to_json` wrote.

    Args:
        data: One decoded spool line.

    Returns:
        The entry, its times in UTC.

    Raises:
        ValueError: On an unknown format version or a malformed line (a time
            without zone or out of range in UTC included).
        KeyError: On a missing field.
    """
    if data.get("v") != SPOOL_FORMAT:
        raise ValueError(f"unknown spool format {data.get('v')!r}")
    arrived = _time_value(data["arrived_at"], "arrived_at")
    if arrived is None:
        raise ValueError("arrived_at is missing")
    return JournalEntry(
        node=str(data["node"]),
        call_id=str(data["call_id"]),
        tenant=str(data["tenant"]),
        did=str(data["did"]),
        caller=None if data["caller"] is None else str(data["caller"]),
        via_115=bool(data["via_115"]),
        action=str(data["action"]),
        reasons=tuple(str(r) for r in data["reasons"]),
        arrived_at=arrived,
        queued_at=_time_value(data["queued_at"], "queued_at"),
        answered_at=_time_value(data["answered_at"], "answered_at"),
        ended_at=_time_value(data["ended_at"], "ended_at"),
        outcome=str(data["outcome"]),
        agent=str(data["agent"]),
        queue=str(data["queue"]),
        wait_s=None if data["wait_s"] is None else float(data["wait_s"]),
        talk_s=None if data["talk_s"] is None else float(data["talk_s"]),
        rings=tuple(dict(r) for r in data["rings"]),
        # Absent in lines spooled before the column existed.
        menu_digit=None if data.get("menu_digit") is None else str(data["menu_digit"]),
    )


def _encode(entries: Iterable[JournalEntry]) -> bytes:
    # ensure_ascii (the default) escapes NUL and lone surrogates: every line is
    # plain ASCII and can always be written and read back.
    return b"".join(
        json.dumps(entry_to_json(e), separators=(",", ":")).encode("ascii") + b"\n" for e in entries
    )


def _valid(entry: JournalEntry) -> bool:
    # What the writer accepts must be writable to the spool, or a database
    # outage would make the spool refuse it and stop the writer.
    try:
        _in_utc(entry.arrived_at, "arrived_at")
        for name, value in (
            ("queued_at", entry.queued_at),
            ("answered_at", entry.answered_at),
            ("ended_at", entry.ended_at),
        ):
            if value is not None:
                _in_utc(value, name)
    except ValueError:
        return False
    return True


def coalesce(entries: Iterable[JournalEntry]) -> list[JournalEntry]:
    """Keep the last entry of each call, in the order calls first appeared.

    Args:
        entries: Entries, oldest first.

    Returns:
        One entry per ``(node, call_id)``.
    """
    latest: dict[Key, JournalEntry] = {}
    for entry in entries:
        latest[(entry.node, entry.call_id)] = entry
    return list(latest.values())


class _Spool:
    """Append-only JSON-lines segments in a directory, replayed oldest first.

    Segments are named by a rising sequence number. Batches are appended to the
    newest segment until it holds ``segment_size`` entries; each segment is
    replayed as one database transaction and deleted afterwards. Every method
    does blocking file I/O (run it in a worker thread) and holds a lock: the
    writer's emergency path at shutdown may race a spool write still running
    in a thread.
    """

    def __init__(self, directory: Path, segment_size: int) -> None:
        self.dir = directory
        self._segment_size = max(1, segment_size)
        self._lock = threading.Lock()
        self._segments: list[tuple[Path, int]] = []  # oldest first, with line counts
        self._next = 1
        self._open: Path | None = None  # the segment we may still append to
        self.entries = 0
        """Entries currently on disk (the spool's part of the backlog)."""

    def recover(self) -> None:
        """Find the segments a previous process left behind."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            found: list[tuple[int, Path]] = []
            for path in self.dir.iterdir():
                match = _SEGMENT.match(path.name)
                if match:
                    found.append((int(match.group(1)), path))
            found.sort()
            self._segments = []
            for _, path in found:
                with path.open("rb") as f:
                    lines = sum(1 for line in f if line.strip())
                self._segments.append((path, lines))
            self.entries = sum(n for _, n in self._segments)
            self._next = found[-1][0] + 1 if found else 1
            # Never append to a file a crash may have left with a torn last line.
            self._open = None

    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Append entries durably (fsync'd before returning).

        Args:
            entries: Oldest first.

        Raises:
            OSError: If the disk refuses (the caller keeps the entries in memory).
            ValueError: If an entry cannot be written (see :func:`entry_to_json`);
                nothing is written then.
        """
        # Encoded before any file or segment is touched: a refused entry must
        # not leave an empty segment behind that the replay cannot read.
        lines = [_encode([e]) for e in entries]
        with self._lock:
            rest = lines
            while rest:
                if self._open is None or self._segments[-1][1] >= self._segment_size:
                    self._open = self.dir / f"journal-{self._next:012d}.jsonl"
                    self._next += 1
                    self._segments.append((self._open, 0))
                    created = True
                else:
                    created = False
                path, count = self._segments[-1]
                room = self._segment_size - count
                chunk, rest = rest[:room], rest[room:]
                try:
                    with path.open("ab") as f:
                        f.write(b"".join(chunk))
                        f.flush()
                        os.fsync(f.fileno())
                    if created:
                        _fsync_dir(self.dir)  # the new file's name must survive too
                except OSError:
                    # The file may end in a torn line now: never append to it again.
                    self._open = None
                    raise
                self._segments[-1] = (path, count + len(chunk))
                self.entries += len(chunk)

    def oldest(self) -> tuple[Path, list[JournalEntry], int] | None:
        """Read the oldest segment.

        Returns:
            ``(path, entries, lines)`` or ``None`` when the spool is empty.
            Unreadable lines (a torn write at a crash) are skipped and logged.
        """
        with self._lock:
            if not self._segments:
                return None
            path, _ = self._segments[0]
            entries: list[JournalEntry] = []
            lines = 0
            with path.open("rb") as f:
                for number, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    lines += 1
                    try:
                        entries.append(entry_from_json(json.loads(line)))
                    except (ValueError, KeyError, TypeError) as exc:
                        log.error(
                            "journal.spool_line_unreadable",
                            file=path.name,
                            line=number,
                            error=str(exc)[:200],
                        )
            return path, entries, lines

    def remove(self, path: Path) -> None:
        """Delete a replayed segment.

        Args:
            path: The segment :meth:`oldest` returned.
        """
        with self._lock:
            index = next(i for i, (p, _) in enumerate(self._segments) if p == path)
            _, count = self._segments.pop(index)
            self.entries -= count
            if path == self._open:
                self._open = None
            path.unlink(missing_ok=True)
            _fsync_dir(self.dir)

    def reject(self, entries: Sequence[JournalEntry]) -> None:
        """Keep entries the database refused for good (for an operator).

        Args:
            entries: The refused entries.
        """
        with self._lock, _locked(self.dir / REJECTED_FILE, "ab") as f:
            assert f is not None  # "ab" creates the file
            f.write(_encode(entries))
            f.flush()
            os.fsync(f.fileno())

    @property
    def segments(self) -> list[Path]:
        """The segment files, oldest first."""
        with self._lock:
            return [p for p, _ in self._segments]


@contextlib.contextmanager
def _locked(path: Path, mode: str) -> Iterator[BinaryIO | None]:
    """``path`` opened and locked (``flock``), ``None`` if it does not exist.

    :func:`age_rejected` replaces the file (possibly from another process: the
    ``purge`` command): whoever waited for the lock on the old file opens the
    new one and locks again, so no append lands in a file already replaced.
    """
    while True:
        try:
            f = path.open(mode)
        except FileNotFoundError:
            yield None
            return
        with f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                yield f  # type: ignore[misc]
                return


def age_rejected(spool_dir: Path, before: datetime) -> int:
    """Remove the entries of calls that arrived before ``before`` from ``rejected.jsonl``.

    Rejected entries are whole journal entries, the caller's number included;
    the retention run calls this with its cut-off, so they are kept no longer
    than the journal keeps the number. Lines that cannot be read (a torn write)
    cannot be dated and are removed too. The file is rewritten atomically
    (temporary file, ``fsync``, rename); a writer appending meanwhile waits for
    the lock and appends to the new file.

    Args:
        spool_dir: The journal writer's spool directory.
        before: Entries with ``arrived_at < before`` go (aware).

    Returns:
        How many entries were removed.
    """
    path = spool_dir / REJECTED_FILE
    with _locked(path, "rb") as f:
        if f is None:
            return 0
        kept: list[bytes] = []
        removed = 0
        for line in f:
            if not line.strip():
                continue
            try:
                arrived = _time_value(json.loads(line)["arrived_at"], "arrived_at")
                young = arrived is not None and arrived >= before
            except (ValueError, KeyError, TypeError):
                young = False
            if young:
                kept.append(line if line.endswith(b"\n") else line + b"\n")
            else:
                removed += 1
        if removed:
            temporary = path.with_name(path.name + ".tmp")
            with temporary.open("wb") as out:
                out.writelines(kept)
                out.flush()
                os.fsync(out.fileno())
            temporary.replace(path)
            _fsync_dir(spool_dir)
    return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "REJECTED_FILE",
    "SPOOL_FORMAT",
    "Key",
    "age_rejected",
    "coalesce",
    "entry_from_json",
    "entry_to_json",
]
