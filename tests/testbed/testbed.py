"""Start, inspect and stop the real Asterisk 22 of the test bed.

:class:`Testbed` is the Python API used by the pytest fixtures and the
``python -m tests.testbed`` CLI.  ``up()`` always starts a fresh Asterisk with freshly
written configuration and empty logs, so every test session sees the same state.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.testbed import chroot
from tests.testbed.ami import AmiClient, AmiError
from tests.testbed.chroot import TestbedError, log
from tests.testbed.config import (
    CONFIG_DIR_IN_CHROOT,
    LIB_DIR_IN_CHROOT,
    LOG_DIR_IN_CHROOT,
    MODULE_DIR_IN_CHROOT,
    RUN_DIR_IN_CHROOT,
    SPOOL_DIR_IN_CHROOT,
    TestbedConfig,
    render_all,
)

#: The repository's shipped dialplan snippets.
PROJECT_DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"

#: Where the sounds the example rules name are read from: the example itself
#: (custom/...) and the virtual hold's default prompts (pbxbridge/vhold-...).
PROMPT_SOURCES: tuple[tuple[Path, str], ...] = (
    (PROJECT_DIALPLANS.parent / "config" / "routing.yaml", r"\b(custom/[A-Za-z0-9_.-]+)"),
    (
        PROJECT_DIALPLANS.parent / "pbxbridge" / "core" / "virtual_hold.py",
        r"\"(pbxbridge/vhold-[a-z-]+)\"",
    ),
)

#: Columns of ``cdr-csv/Master.csv`` with loguniqueid, loguserfield, newcdrcolumns.
CDR_COLUMNS: tuple[str, ...] = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "peeraccount",
    "linkedid",
    "sequence",
)


class _FatalStartError(TestbedError):
    """Asterisk started but is unusable; waiting longer will not help."""


class Testbed:
    """A real Asterisk 22 in a Debian sid chroot, bound to loopback.

    Attributes:
        root: Host path of the chroot.
        config: The configuration written on :meth:`up`.
        dialplan_dir: Directory whose ``*.conf`` files are copied verbatim and
            ``#include``-d (the project's ``dialplans/``).
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        root: Path | None = None,
        config: TestbedConfig | None = None,
        dialplan_dir: Path | None = None,
    ) -> None:
        """Describe a test bed; nothing is started until :meth:`up`.

        Args:
            root: Chroot location (default ``$PBXBRIDGE_TESTBED_ROOT`` or
                ``/var/cache/pbxbridge/testbed-sid``).
            config: Asterisk configuration (default :class:`TestbedConfig`).
            dialplan_dir: Snippets to include (default the repository's
                ``dialplans/``).
        """
        self.root = (root or chroot.default_root()).absolute()
        self.config = config or TestbedConfig()
        self.dialplan_dir = dialplan_dir or PROJECT_DIALPLANS
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------ connection info

    @property
    def ari_url(self) -> str:
        """Base URL of the ARI REST API, e.g. ``http://127.0.0.1:8088/ari``."""
        return f"http://127.0.0.1:{self.config.http_port}/ari"

    @property
    def ari_ws_url(self) -> str:
        """ARI events websocket URL for the ``pbxbridge`` application (no credentials)."""
        return f"ws://127.0.0.1:{self.config.http_port}/ari/events?app=pbxbridge"

    @property
    def ari_user(self) -> str:
        """ARI user name."""
        return self.config.ari_user

    @property
    def ari_password(self) -> str:
        """ARI password."""
        return self.config.ari_password

    @property
    def ami_host(self) -> str:
        """AMI host."""
        return "127.0.0.1"

    @property
    def ami_port(self) -> int:
        """AMI port."""
        return self.config.ami_port

    @property
    def ami_user(self) -> str:
        """AMI user name."""
        return self.config.ami_user

    @property
    def ami_password(self) -> str:
        """AMI secret."""
        return self.config.ami_password

    @property
    def sip_host(self) -> str:
        """Address of Asterisk's PJSIP UDP transport."""
        return "127.0.0.1"

    @property
    def sip_port(self) -> int:
        """Port of Asterisk's PJSIP UDP transport."""
        return self.config.sip_port

    @property
    def conf_dir(self) -> Path:
        """Host path of the private configuration directory."""
        return self.root / CONFIG_DIR_IN_CHROOT.lstrip("/")

    @property
    def log_dir(self) -> Path:
        """Host path of Asterisk's log directory (full, queue_log, cdr-csv, console)."""
        return self.root / LOG_DIR_IN_CHROOT.lstrip("/")

    @property
    def console_log(self) -> Path:
        """Host path of Asterisk's captured stdout/stderr."""
        return self.log_dir / "console.log"

    @property
    def full_log(self) -> Path:
        """Host path of the ``full`` log file."""
        return self.log_dir / "full"

    def connection_info(self) -> dict[str, object]:
        """Everything a client needs to talk to this Asterisk.

        Returns:
            JSON-serialisable mapping.
        """
        cfg = self.config
        return {
            "root": str(self.root),
            "ari_url": self.ari_url,
            "ari_ws_url": self.ari_ws_url,
            "ari_user": self.ari_user,
            "ari_password": self.ari_password,
            "ari_app": "pbxbridge",
            "ami_host": self.ami_host,
            "ami_port": self.ami_port,
            "ami_user": self.ami_user,
            "ami_password": self.ami_password,
            "sip": f"{self.sip_host}:{self.sip_port}/udp",
            "trunk_source_ip": cfg.trunk_ip,
            "pure_trunk_source_ip": cfg.pure_trunk_ip,
            "agents": {
                f"agent{n}": f"{cfg.agent_ip}:{cfg.agent_port(n)}"
                for n in range(1, cfg.agent_count + 1)
            },
            "queues": {q.name: list(q.members) for q in cfg.queues},
            "log_dir": str(self.log_dir),
            "conf_dir": str(self.conf_dir),
        }

    # --------------------------------------------------------------- lifecycle

    def ensure(self) -> Path:
        """Build the chroot (and install sipp/debootstrap on the host) if needed.

        Returns:
            The chroot path.
        """
        return chroot.ensure_chroot(self.root)

    def up(self, timeout: float = 60.0) -> dict[str, object]:
        """(Re)start Asterisk with fresh configuration and wait until it is ready.

        A running or stale instance is stopped first, so this is safe after a crash.

        Args:
            timeout: Seconds to wait for ARI, AMI and PJSIP to answer.

        Returns:
            :meth:`connection_info`.

        Raises:
            TestbedError: Asterisk did not start or become ready.
        """
        with chroot.locked(self.root):
            chroot.ensure_chroot_locked(self.root)
            self._stop_locked()
            self._check_ports_free()
            chroot.mount_proc(self.root)
            # Without the host's /etc/hosts Asterisk resolves the hostname (and
            # A.ROOT-SERVERS.NET) on every call; each lookup fails slowly and queue
            # calls then took seconds instead of milliseconds.
            shutil.copyfile("/etc/hosts", self.root / "etc/hosts")
            self._prepare_dirs()
            self.write_config()
            self._start()
            try:
                self._wait_ready(timeout)
            except BaseException:
                self._stop_locked()
                raise
        info = self.connection_info()
        log(f"Asterisk is up: ARI {self.ari_url}, AMI {self.ami_host}:{self.ami_port}")
        return info

    def down(self) -> None:
        """Stop Asterisk (``core stop now``, then signals) and unmount everything."""
        if not self.root.exists():
            return
        with chroot.locked(self.root):
            self._stop_locked()

    def is_running(self) -> bool:
        """Whether any process is running inside the chroot.

        Returns:
            True when Asterisk (or a leftover helper) runs there.
        """
        return self.root.exists() and bool(chroot.chroot_pids(self.root))

    def status(self) -> dict[str, object]:
        """Build, process, mount and readiness state.

        Returns:
            JSON-serialisable mapping.
        """
        running = self.is_running()
        info: dict[str, object] = {
            "root": str(self.root),
            "built": chroot.is_intact(self.root),
            "build": chroot.chroot_info(self.root),
            "pids": chroot.chroot_pids(self.root) if self.root.exists() else [],
            "mounts": [str(m) for m in chroot.mounts_under(self.root)],
            "running": running,
        }
        if running:
            try:
                info["version"] = self.cli("core show version").strip()
                info["ari_ready"] = self._ari_ready()
            except TestbedError as exc:
                info["error"] = str(exc)
        return info

    # ------------------------------------------------------------- operations

    def cli(self, command: str, timeout: float = 15.0) -> str:
        """Run an Asterisk CLI command (``asterisk -rx``) and return its output.

        Args:
            command: CLI command, e.g. ``"core show channels"``.
            timeout: Seconds before giving up.

        Returns:
            The command's output.

        Raises:
            TestbedError: Asterisk is not reachable or the command timed out.
        """
        cmd = [
            "chroot",
            str(self.root),
            chroot.ASTERISK_BIN,
            "-C",
            f"{CONFIG_DIR_IN_CHROOT}/asterisk.conf",
            "-rx",
            command,
        ]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise TestbedError(f"CLI {command!r} timed out after {timeout}s") from exc
        if proc.returncode != 0:
            raise TestbedError(
                f"CLI {command!r} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-500:]}"
            )
        return proc.stdout

    def ami(self, *, events: bool = True, timeout: float = 5.0) -> AmiClient:
        """Open a logged-in AMI connection (close it, or use it as a context manager).

        Args:
            events: Subscribe to events.
            timeout: Seconds for connecting and each response.

        Returns:
            The client.
        """
        return AmiClient(
            self.ami_host,
            self.ami_port,
            self.ami_user,
            self.ami_password,
            timeout=timeout,
            events=events,
        )

    def ari_request(
        self, method: str, path: str, body: object | None = None, timeout: float = 5.0
    ) -> tuple[int, object]:
        """Call the ARI REST API.

        Args:
            method: HTTP method.
            path: Path below ``/ari``, e.g. ``"/asterisk/info"``.
            body: JSON body, if any.
            timeout: Seconds.

        Returns:
            HTTP status and the decoded JSON body (``None`` when empty).
        """
        token = base64.b64encode(f"{self.ari_user}:{self.ari_password}".encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.ari_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = int(resp.status)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        return status, (json.loads(raw) if raw.strip() else None)

    def write_config(self) -> None:
        """(Re)write the configuration directory from :attr:`config` and the snippets.

        Old files are removed first so a deleted snippet does not linger.  The
        snippets are copied byte for byte: the shipped file is the tested file.
        """
        conf_dir = self.conf_dir
        if conf_dir.exists():
            shutil.rmtree(conf_dir)
        conf_dir.mkdir(parents=True)
        includes: list[str] = []
        if self.dialplan_dir.is_dir():
            for snippet in sorted(self.dialplan_dir.glob("*.conf")):
                shutil.copyfile(snippet, conf_dir / snippet.name)
                includes.append(snippet.name)
        rendered = render_all(self.config, includes, module_dir=self._module_dir())
        clash = set(includes) & set(rendered)
        if clash:
            raise TestbedError(f"dialplan snippet names clash with generated files: {clash}")
        for name, text in rendered.items():
            (conf_dir / name).write_text(text, encoding="utf-8")

    def _module_dir(self) -> str:
        # multiarch path, e.g. /usr/lib/x86_64-linux-gnu/asterisk/modules
        for found in sorted((self.root / "usr/lib").glob("*/asterisk/modules")):
            return "/" + str(found.relative_to(self.root))
        return MODULE_DIR_IN_CHROOT

    def reconfigure(self, config: TestbedConfig) -> None:
        """Apply a new configuration to the running Asterisk (queues, PJSIP, dialplan).

        Args:
            config: The new configuration.  Ports and module lists are not reloaded;
                change those with :meth:`up`.
        """
        self.config = config
        self.write_config()
        for cmd in ("module reload res_pjsip.so", "queue reload all", "dialplan reload"):
            self.cli(cmd)

    # -------------------------------------------------------------- evidence

    def cdrs(self) -> list[dict[str, str]]:
        """CDRs written so far (``cdr-csv/Master.csv``).

        Returns:
            One dict per CDR, keyed by :data:`CDR_COLUMNS`.
        """
        path = self.log_dir / "cdr-csv" / "Master.csv"
        if not path.exists():
            return []
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            return [dict(zip(CDR_COLUMNS, row, strict=False)) for row in csv.reader(fh)]

    def cdr_mark(self) -> int:
        """Number of CDRs written so far; pass it as ``since`` to ignore older ones.

        Returns:
            The current CDR count.
        """
        return len(self.cdrs())

    def wait_for_cdr(
        self,
        predicate: Callable[[dict[str, str]], bool],
        timeout: float = 10.0,
        *,
        since: int = 0,
    ) -> dict[str, str]:
        """Wait until a CDR satisfying ``predicate`` has been written.

        CDRs are written when the call ends, a moment after sipp has seen its BYE
        answered.  The CDR file covers the whole session: use ``since`` (from
        :meth:`cdr_mark`, taken before the call) to look at new CDRs only.

        Args:
            predicate: Test applied to each CDR dict.
            timeout: Seconds.
            since: Ignore the first ``since`` CDRs.

        Returns:
            The first matching CDR.

        Raises:
            TestbedError: None appeared in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            for cdr in self.cdrs()[since:]:
                if predicate(cdr):
                    return cdr
            if time.monotonic() > deadline:
                raise TestbedError(f"no matching CDR within {timeout}s; CDRs: {self.cdrs()}")
            time.sleep(0.1)

    def queue_log(self) -> list[list[str]]:
        """Lines of ``queue_log`` split at ``|``.

        Returns:
            ``[time, callid, queue, agent, event, data...]`` per line.
        """
        path = self.log_dir / "queue_log"
        if not path.exists():
            return []
        return [
            line.split("|")
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if line
        ]

    def full_log_text(self) -> str:
        """Content of the ``full`` log.

        Returns:
            Log text (empty before the first line).
        """
        try:
            return self.full_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def queue_counts(self, queue: str) -> dict[str, int]:
        """Completed/abandoned/waiting counts of a queue from ``queue show``.

        Args:
            queue: Queue name.

        Returns:
            ``{"calls": waiting, "completed": C, "abandoned": A}``.
        """
        out = self.cli(f"queue show {queue}")
        first = out.strip().splitlines()[0] if out.strip() else ""
        counts = {"calls": -1, "completed": -1, "abandoned": -1}
        words = first.replace(",", " ").split()
        for i, word in enumerate(words):
            if word == "has" and i + 1 < len(words) and words[i + 1].isdigit():
                counts["calls"] = int(words[i + 1])
            if word.startswith("C:") and word[2:].isdigit():
                counts["completed"] = int(word[2:])
            if word.startswith("A:") and word[2:].isdigit():
                counts["abandoned"] = int(word[2:])
        return counts

    def active_channels(self) -> int:
        """Number of active channels.

        Returns:
            Channel count from ``core show channels count``.
        """
        out = self.cli("core show channels count")
        for line in out.splitlines():
            if "active channel" in line:
                return int(line.split()[0])
        return 0

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Wait until no channel is left (the previous test's calls have ended).

        Args:
            timeout: Seconds.

        Raises:
            TestbedError: Channels remained.
        """
        deadline = time.monotonic() + timeout
        while True:
            count = self.active_channels()
            if count == 0:
                return
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"{count} channel(s) still up:\n{self.cli('core show channels')}"
                )
            time.sleep(0.1)

    # -------------------------------------------------------------- internals

    def _prepare_dirs(self) -> None:
        for d in (RUN_DIR_IN_CHROOT, SPOOL_DIR_IN_CHROOT, LIB_DIR_IN_CHROOT, LOG_DIR_IN_CHROOT):
            (self.root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (self.root / "var/cache/asterisk-test").mkdir(parents=True, exist_ok=True)
        # fresh evidence for every start: CDRs, queue_log and logs of this run only
        shutil.rmtree(self.log_dir)
        self.log_dir.mkdir()
        (self.log_dir / "cdr-csv").mkdir()
        # the astdb keeps e.g. queue member pause state; start from nothing
        for name in ("astdb.sqlite3", "astdb"):
            (self.root / LIB_DIR_IN_CHROOT.lstrip("/") / name).unlink(missing_ok=True)
        self._prepare_voicemail()
        self._install_prompts()
        for stale in (self.root / RUN_DIR_IN_CHROOT.lstrip("/")).glob("*"):
            if stale.is_file() or stale.is_socket():
                stale.unlink()

    @property
    def voicemail_dir(self) -> Path:
        """Host path of mailbox ``1000@pbxbridge``'s spool directory."""
        return self.root / SPOOL_DIR_IN_CHROOT.lstrip("/") / "voicemail" / "pbxbridge" / "1000"

    def voicemail_messages(self) -> list[Path]:
        """Messages left in mailbox ``1000@pbxbridge`` (their ``.txt`` metadata files).

        Returns:
            Paths, oldest first.
        """
        return sorted((self.voicemail_dir / "INBOX").glob("msg*.txt"))

    def _prepare_voicemail(self) -> None:
        # empty mailbox for every start
        spool = self.root / SPOOL_DIR_IN_CHROOT.lstrip("/") / "voicemail"
        shutil.rmtree(spool, ignore_errors=True)
        self.voicemail_dir.mkdir(parents=True)
        # A recorded "unavailable" greeting replaces the stock "the person at
        # extension 1-0-0-0 is unavailable" (7 s of prompts) with a beep, so a test
        # call reaches the recording within about 2 s.
        beeps = sorted((self.root / "usr/share/asterisk/sounds").glob("*/beep.gsm"))
        if beeps:
            shutil.copyfile(beeps[0], self.voicemail_dir / "unavail.gsm")

    def _install_prompts(self) -> None:
        # The example rules' whispers, announcements and menu prompt, and the
        # virtual hold's prompts, as 0.3 s of silence: a missing whisper costs
        # app_queue ~10 ms per call looking for it, a missing prompt plays
        # nothing, and `pbxbridge check --ari` would report them. Written where
        # Asterisk plays them in every language (sounds/custom/x.ulaw).
        sounds = self.root / "usr/share/asterisk/sounds"
        for source, pattern in PROMPT_SOURCES:
            for name in sorted(set(re.findall(pattern, source.read_text(encoding="utf-8")))):
                path = sounds / f"{name}.ulaw"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"\xff" * 2400)

    def _check_ports_free(self) -> None:
        cfg = self.config
        checks = (
            (socket.SOCK_STREAM, cfg.http_port, "HTTP/ARI"),
            (socket.SOCK_STREAM, cfg.ami_port, "AMI"),
            (socket.SOCK_DGRAM, cfg.sip_port, "SIP"),
        )
        for kind, port, what in checks:
            with socket.socket(socket.AF_INET, kind) as s:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError as exc:
                    raise TestbedError(
                        f"127.0.0.1:{port} ({what}) is already in use by another process; "
                        "stop it before starting the test bed"
                    ) from exc

    def _start(self) -> None:
        console = self.console_log.open("ab")
        try:
            # -f: stay in the foreground (we own the process), -n: no colours.
            # start_new_session: keeps running after the CLI that started it exits and
            # is not hit by a Ctrl-C meant for pytest.
            self._proc = subprocess.Popen(
                [
                    "chroot",
                    str(self.root),
                    chroot.ASTERISK_BIN,
                    "-C",
                    f"{CONFIG_DIR_IN_CHROOT}/asterisk.conf",
                    "-f",
                    "-n",
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={
                    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": "/root",
                    "LANG": "C.UTF-8",
                    "TERM": "dumb",
                },
            )
        finally:
            console.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        step = "CLI"
        last_error = ""
        while time.monotonic() < deadline:
            # (not is_running(): right after Popen the process may still be the
            # chroot(8) binary, whose root is not the chroot yet)
            if self._proc is not None and self._proc.poll() is not None:
                raise TestbedError(
                    f"Asterisk exited during start ({self._proc.returncode}); "
                    f"console log:\n{self._console_tail()}"
                )
            try:
                if step == "CLI":
                    self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                    self._check_modules_loaded()
                    step = "ARI"
                if step == "ARI":
                    if not self._ari_ready():
                        raise TestbedError("ARI not answering yet")
                    step = "AMI"
                if step == "AMI":
                    with self.ami(events=False, timeout=2.0) as ami:
                        if ami.action("Ping").get("Response") != "Success":
                            raise TestbedError("AMI ping failed")
                    step = "PJSIP"
                if step == "PJSIP":
                    self._check_pjsip()
                    return
            except _FatalStartError:
                raise
            except (TestbedError, AmiError, OSError) as exc:
                last_error = f"{step}: {exc}"
            time.sleep(0.1)
        raise TestbedError(
            f"Asterisk not ready after {timeout}s ({last_error}); console log:\n"
            f"{self._console_tail()}"
        )

    def _check_modules_loaded(self) -> None:
        console = self.console_log.read_text(errors="replace")
        bad = [
            line
            for line in console.splitlines()
            if "Error loading module" in line
            or "declined to load" in line
            or "Failed to resolve dependencies" in line
        ]
        if bad:
            # not retried: a module that failed at start will not load by waiting
            self._stop_locked()
            raise _FatalStartError("modules failed to load:\n" + "\n".join(bad))

    def _ari_ready(self) -> bool:
        try:
            status, _ = self.ari_request("GET", "/asterisk/info", timeout=2.0)
        except (OSError, ValueError):
            return False
        return status == 200

    def _check_pjsip(self) -> None:
        out = self.cli("pjsip show endpoints")
        expected = ["trunk", "trunk-pure"] + [
            f"agent{n}" for n in range(1, self.config.agent_count + 1)
        ]
        names = {
            line.split()[1].split("/")[0]
            for line in out.splitlines()
            if line.strip().startswith("Endpoint:") and len(line.split()) > 1
        }
        missing = [e for e in expected if e not in names]
        if missing:
            raise TestbedError(f"PJSIP endpoints missing: {missing}")
        # the UDP transport really answers: an OPTIONS from the trunk address
        self._sip_options_probe()

    def _sip_options_probe(self) -> None:
        cfg = self.config
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((cfg.trunk_ip, 0))
            s.settimeout(1.0)
            port = s.getsockname()[1]
            branch = "z9hG4bK" + uuid.uuid4().hex[:16]
            msg = (
                f"OPTIONS sip:{self.sip_host}:{self.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {cfg.trunk_ip}:{port};branch={branch};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{cfg.trunk_ip}>;tag={uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:{self.sip_host}:{self.sip_port}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}@testbed\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            s.sendto(msg.encode(), (self.sip_host, self.sip_port))
            try:
                data = s.recv(65535)
            except TimeoutError as exc:
                raise TestbedError("no answer to SIP OPTIONS") from exc
        if not data.startswith(b"SIP/2.0 "):
            raise TestbedError(f"odd SIP answer {data[:40]!r}")

    def _stop_locked(self) -> None:
        if not self.root.exists():
            return
        if chroot.chroot_pids(self.root):
            # not answering: the signals below do it
            with contextlib.suppress(TestbedError):
                self.cli("core stop now", timeout=5.0)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and chroot.chroot_pids(self.root):
                time.sleep(0.05)
            killed = chroot.kill_chroot_processes(self.root)
            if killed:
                log(f"killed leftover processes in the chroot: {killed}")
        chroot.unmount_all(self.root)

    def _console_tail(self, chars: int = 4000) -> str:
        try:
            return self.console_log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no console log)"
