"""Private mosquitto brokers for tests: free port, generated config, stop/start.

Each :class:`MosquittoBroker` lives in its own directory (config, log, password
file, certificates) and listens on 127.0.0.1 only. The port is chosen once and
kept across :meth:`MosquittoBroker.stop` / :meth:`MosquittoBroker.start`, so a
client reconnecting to the same address sees the "broker went away and came
back" case.

Three flavours, combinable:

* plain (anonymous),
* ``users={...}``: a password file made with ``mosquitto_passwd`` and
  ``allow_anonymous false``, optionally with an ``acl_file``,
* ``tls=True``: a throwaway CA, a server certificate for ``127.0.0.1`` /
  ``localhost`` and a client certificate, all made with the ``openssl`` CLI (the
  ``cryptography`` package is not installed here and is not needed); the broker
  then requires a client certificate signed by that CA.

Usage in a fixture::

    broker = MosquittoBroker(tmp_path)
    broker.start()
    yield broker
    broker.close()
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = os.environ.get("PBXBRIDGE_MOSQUITTO", "/usr/sbin/mosquitto")


class MosquittoError(RuntimeError):
    """A private broker could not be set up or started."""


def mosquitto_available() -> bool:
    """Whether the broker binary (and the helpers the flavours need) exist."""
    return Path(MOSQUITTO).is_file() and os.access(MOSQUITTO, os.X_OK)


def mosquitto_version() -> str:
    """The broker's version string, e.g. ``2.0.11``."""
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    return first.rsplit(" ", 1)[-1] if first else "unknown"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """Throwaway PKI for one broker.

    Attributes:
        ca_file: CA certificate (trust anchor for both sides).
        server_cert: Server certificate (SAN ``IP:127.0.0.1``, ``DNS:localhost``).
        server_key: Its key.
        client_cert: Client certificate (CN ``client_cn``) signed by the CA.
        client_key: Its key.
        other_ca_file: A second, unrelated CA (for "wrong trust anchor" tests).
    """

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise MosquittoError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def make_pki(directory: Path, *, client_cn: str = "pbxbridge") -> TlsFiles:
    """Create a CA, a server and a client certificate with the ``openssl`` CLI.

    EC P-256 keys keep this fast (a few tens of milliseconds).

    Args:
        directory: Where to write the files (created if missing).
        client_cn: Common name of the client certificate.

    Returns:
        The file paths.

    Raises:
        MosquittoError: If ``openssl`` is missing or fails.
    """
    if shutil.which("openssl") is None:
        raise MosquittoError("the openssl CLI is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN=pbxbridge test {ca}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory,
        )
    leaves = {
        "server": (
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        "client": (client_cn, "extendedKeyUsage=clientAuth\n"),
    }
    for name, (cn, extensions) in leaves.items():
        (directory / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + extensions,
            encoding="ascii",
        )
        _openssl(
            "req",
            "-new",
            *ec,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
            cwd=directory,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{name}.ext",
            cwd=directory,
        )
    return TlsFiles(
        ca_file=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        other_ca_file=directory / "other-ca.crt",
    )


def make_password_file(path: Path, users: Mapping[str, str]) -> None:
    """Write a mosquitto password file with ``mosquitto_passwd``.

    Args:
        path: The file to create (overwritten).
        users: User name → password.

    Raises:
        MosquittoError: If ``mosquitto_passwd`` is missing or fails.
    """
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise MosquittoError("mosquitto_passwd is not installed")
    path.write_text("", encoding="ascii")
    for user, password in users.items():
        # -b (password on the command line) is fine for throwaway test users.
        result = subprocess.run(
            [tool, "-b", str(path), user, password], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise MosquittoError(f"mosquitto_passwd failed: {result.stderr.strip()}")


class MosquittoBroker:
    """One private mosquitto process.

    Args:
        directory: Working directory for config, log and generated files.
        users: If given, require these user names/passwords (no anonymous access).
        acl_file: An ACL file to use (needs ``users``).
        tls: Serve MQTT over TLS only, requiring a client certificate.
        persistence: Keep sessions, subscriptions and queued QoS 1 messages of
            persistent clients (``clean_session=False``) across a stop/start.
        port: Fixed port (default: a free one, kept across restarts).
        unix_socket: Also listen on a Unix domain socket (``socket_path``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str] | None = None,
        acl_file: Path | None = None,
        tls: bool = False,
        persistence: bool = False,
        port: int | None = None,
        unix_socket: bool = False,
    ) -> None:
        if not mosquitto_available():
            raise MosquittoError(f"{MOSQUITTO} is not installed")
        if acl_file is not None and not users:
            raise MosquittoError("an ACL file needs users")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self.log_file = directory / "mosquitto.log"
        self.config_file = directory / "mosquitto.conf"
        self.tls_files: TlsFiles | None = make_pki(directory / "pki") if tls else None
        self.persistence = persistence
        self.socket_path = str(directory / "mqtt.sock") if unix_socket else None
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config(users, acl_file)

    def _write_config(self, users: Mapping[str, str] | None, acl_file: Path | None) -> None:
        lines = [
            # Started as root, mosquitto would switch to the "mosquitto" user and then
            # fail to read files in a root-only temporary directory: stay who we are.
            f"user {getpass.getuser()}",
            # mosquitto writes the database on SIGTERM and reads it at start-up.
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
        ]
        if self.socket_path is not None:
            lines.append(f"listener 0 {self.socket_path}")
        if users:
            password_file = self.directory / "passwd"
            make_password_file(password_file, users)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
            if acl_file is not None:
                lines.append(f"acl_file {acl_file}")
        else:
            lines.append("allow_anonymous true")
        if self.tls_files is not None:
            lines += [
                f"cafile {self.tls_files.ca_file}",
                f"certfile {self.tls_files.server_cert}",
                f"keyfile {self.tls_files.server_key}",
                "require_certificate true",
                "tls_version tlsv1.2",
            ]
        self.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 5.0) -> None:
        """Start the broker and wait until its port accepts connections.

        Args:
            timeout: Seconds to wait for the listener.

        Raises:
            MosquittoError: If it exits or does not listen in time.
        """
        if self.running:
            return
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise MosquittoError(f"mosquitto exited at start-up:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        self.stop()
        raise MosquittoError(f"mosquitto did not listen on {self.port}:\n{self.log()}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); a no-op when not running.

        Args:
            timeout: Seconds to wait after SIGTERM before SIGKILL.
        """
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, wait ``down_for`` seconds, start again on the same port.

        Args:
            down_for: Seconds to stay down.
        """
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop the broker for good (fixture teardown)."""
        self.stop()
