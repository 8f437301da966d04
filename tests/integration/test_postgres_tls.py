"""The documented TLS set-up for a remote PostgreSQL, against a real TLS server.

docs/journal.md tells operators to put ``sslmode=verify-full`` and
``sslrootcert`` into the database URL. This module starts a private PostgreSQL
(the machine's binaries, ``initdb`` into a temporary folder, a free port) that
accepts only TLS connections (``hostssl`` in ``pg_hba.conf``), with a server
certificate for ``localhost`` signed by a throwaway CA, and checks that the
journal connects with exactly that URL, and refuses a wrong CA, a host name
the certificate does not name, and a plain connection, each with an error
that does not show the URL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pbxbridge.journal.postgres import PostgresJournal
from tests.postgres import free_port

pytestmark = pytest.mark.postgres

BIN = Path("/usr/lib/postgresql")


def _pg_bin() -> Path | None:
    found = sorted(BIN.glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _run(argv: list[str], user: str | None) -> None:
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr or done.stdout}"


def _certificates(folder: Path) -> None:
    """A CA, and a certificate for the host name ``localhost`` signed by it."""

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder, timeout=60)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=other CA",
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
    )
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[int, Path]]:
    """``(port, certificate folder)`` of a private PostgreSQL that accepts only TLS."""
    binaries = _pg_bin()
    if binaries is None or shutil.which("openssl") is None:
        pytest.skip("needs PostgreSQL's server binaries and openssl")
    # initdb refuses root: run the server as the postgres user then.
    user = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's tmp_path: its root-owned 0700 parents would keep the
    # postgres user out.
    root = Path(tempfile.mkdtemp(prefix="pbxbridge-pgtls-"))
    try:
        yield _start(binaries, root, user)
    finally:
        try:
            if (root / "data" / "postmaster.pid").exists():
                _run(
                    [str(binaries / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
                    user,
                )
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _start(binaries: Path, root: Path, user: str | None) -> tuple[int, Path]:
    certs = root / "certs"
    certs.mkdir()
    _certificates(certs)
    if user is not None:
        for item in [root, certs, *certs.iterdir()]:
            shutil.chown(item, user)
    (certs / "server.key").chmod(0o600)
    data = root / "data"
    _run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"], user)
    port = free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root}'\nssl = on\n"
            f"ssl_cert_file = '{certs / 'server.crt'}'\nssl_key_file = '{certs / 'server.key'}'\n"
        )
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\n")
    _run(
        [
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "30",
            "start",
        ],
        user,
    )
    return port, certs


def url(port: int, host: str = "localhost", **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"postgresql://postgres:s3cret@{host}:{port}/postgres?{query}"


def test_verify_full_with_the_documented_url(tls_server: tuple[int, Path]) -> None:
    port, certs = tls_server
    with PostgresJournal(
        url(port, sslmode="verify-full", sslrootcert=str(certs / "ca.crt"))
    ) as store:
        assert store.schema_version >= 2
        (row,) = store._read("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", ())
        assert row[0] is True


@pytest.mark.parametrize(
    ("host", "params", "message"),
    [
        (
            "localhost",
            {"sslmode": "verify-full", "sslrootcert": "other.crt"},
            "certificate verify failed",
        ),
        # The certificate names localhost, not the address.
        (
            "127.0.0.1",
            {"sslmode": "verify-full", "sslrootcert": "ca.crt"},
            "does not match host name",
        ),
        ("localhost", {"sslmode": "disable"}, "no encryption"),
    ],
)
def test_what_verify_full_refuses(
    tls_server: tuple[int, Path], host: str, params: dict[str, str], message: str
) -> None:
    port, certs = tls_server
    if "sslrootcert" in params:
        params = {**params, "sslrootcert": str(certs / params["sslrootcert"])}
    with pytest.raises(psycopg.OperationalError) as caught:
        PostgresJournal(url(port, host, **params), connect_timeout=3)
    text = str(caught.value)
    assert message in text
    assert "s3cret" not in text and "sslrootcert" not in text
