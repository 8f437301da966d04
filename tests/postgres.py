"""PostgreSQL for tests: throwaway databases, a line that can be cut (a pytest plugin).

Enabled in ``tests/conftest.py``. Tests that use it are marked ``postgres`` and
talk to the machine's server (127.0.0.1:5432, trust authentication).

* ``database`` (module): a throwaway database, already migrated (journal and
  overrides tables), dropped at the end of the module; tests TRUNCATE what
  they use first.
* ``fresh_database`` (function): an empty throwaway database.
* ``proxy`` (function): a :class:`Proxy` in front of the server.

``PBXBRIDGE_TEST_POSTGRES`` overrides the server URL; ``PBXBRIDGE_SKIP_POSTGRES=1``
skips the tests (otherwise an unreachable server is an error, not a silent skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pbxbridge.journal.postgres import PostgresJournal

SERVER = os.environ.get("PBXBRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP = os.environ.get("PBXBRIDGE_SKIP_POSTGRES", "").strip().lower() in {"1", "yes", "true"}


def admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(SERVER, autocommit=True, connect_timeout=5)


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A new, empty database; its URL. Dropped afterwards (connections and all)."""
    name = f"pbxbridge_test_{secrets.token_hex(6)}"
    with admin() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield make_conninfo(SERVER, dbname=name)
    finally:
        with admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    if SKIP:
        pytest.skip("PBXBRIDGE_SKIP_POSTGRES=1: PostgreSQL tests skipped")
    with throwaway_database() as url:
        PostgresJournal(url).close()  # migrated, so tests may TRUNCATE first
        yield url


@pytest.fixture
def fresh_database() -> Iterator[str]:
    if SKIP:
        pytest.skip("PBXBRIDGE_SKIP_POSTGRES=1: PostgreSQL tests skipped")
    with throwaway_database() as url:
        yield url


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode())
        return cur.fetchall() if cur.description is not None else []


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """A TCP proxy to PostgreSQL that can cut the line.

    Args:
        target: ``(host, port)`` of the real server.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.cuts = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, database: str) -> str:
        return make_conninfo(database, host="127.0.0.1", port=self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._links |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._links -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def cut(self, seconds: float) -> None:
        """Reset every connection and refuse new ones for ``seconds``."""
        assert self._server is not None
        self.cuts += 1
        self._server.close()  # the port refuses connections now
        for link in list(self._links):
            link.transport.abort()  # RST: like a firewall dropping the session
        await asyncio.sleep(seconds)
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.transport.abort()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    info = psycopg.conninfo.conninfo_to_dict(SERVER)
    p = Proxy((str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432)))))
    await p.start()
    yield p
    await p.close()
