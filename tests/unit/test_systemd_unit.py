"""Static checks of systemd/ with the real systemd tools (no running systemd needed).

Quirks of systemd-analyze 252 (Debian 12) that shape these tests:

* ``verify`` exits 0 on "Unknown key"/"Invalid syntax" warnings with the default
  ``--recursive-errors=yes``; only ``--recursive-errors=no`` (or ``one``) makes such
  warnings in the named unit fatal. We use ``no`` - it also skips loading
  asterisk.service & co., which do not exist on a build host - and additionally
  require empty output. ``TestVerifyHarness`` proves the flags catch a bad key.
* ``verify`` fails when ExecStart='s binary does not exist, hence the copy with a
  substituted path. It does not resolve User=/Group=, so the pbxbridge user need
  not exist. ``--man=no`` (no Documentation= man pages are checked) and
  ``--generators=no`` (no generators run as a non-PID-1 manager) keep it hermetic.
* ``security --offline=true`` scores the unit file alone; the overall score is only
  printed as text, ``--json`` lists the individual checks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
UNIT = SYSTEMD_DIR / "pbxbridge.service"
SYSUSERS = SYSTEMD_DIR / "pbxbridge.sysusers.conf"
TMPFILES = SYSTEMD_DIR / "pbxbridge.tmpfiles.conf"
ENV_EXAMPLE = SYSTEMD_DIR / "pbxbridge.env.example"

EXEC_START_BINARY = "/usr/bin/pbxbridge"
MAX_EXPOSURE = 2.0
# What `security` still flags, and why that is accepted:
ACCEPTED_EXPOSURES = {
    "PrivateNetwork=",  # a network daemon needs the host network
    "RestrictAddressFamilies=~AF_(INET|INET6)",  # ARI/AMI/PostgreSQL/MQTT/HTTP
    "RestrictAddressFamilies=~AF_UNIX",  # journald, sd_notify, PostgreSQL socket
    "IPAddressDeny=",  # allow-list is localhost only, the best possible
    "RootDirectory=/RootImage=",  # runs from the host's Python installation
    "DeviceAllow=",  # char-rtc:r, added implicitly by ProtectClock=yes
}

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (apt install systemd)"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"},
    )


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return _run(SYSTEMD_ANALYZE, *args)


def _existing_executable() -> str:
    console_script = Path(sys.executable).parent / "pbxbridge"
    if console_script.is_file() and os.access(console_script, os.X_OK):
        return str(console_script)
    return sys.executable


def _unit_copy(tmp_path: Path, text: str | None = None) -> Path:
    """Writes the unit to tmp_path with ExecStart= pointing at an existing binary."""
    original = UNIT.read_text(encoding="utf-8") if text is None else text
    exec_start = f"ExecStart={EXEC_START_BINARY} "
    assert original.count(exec_start) == 1, "expected exactly one ExecStart= line"
    patched = original.replace(exec_start, f"ExecStart={_existing_executable()} ")
    # Everything else verbatim: only the one line may differ.
    diff = [
        (a, b) for a, b in zip(original.splitlines(), patched.splitlines(), strict=True) if a != b
    ]
    assert len(diff) == 1
    target = tmp_path / "pbxbridge.service"
    target.write_text(patched, encoding="utf-8")
    return target


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return _analyze(
        "verify", "--man=no", "--generators=no", "--recursive-errors=no", "--no-pager", str(unit)
    )


def _directives(name: str) -> list[str]:
    prefix = name + "="
    return [
        line[len(prefix) :]
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if line.startswith(prefix)
    ]


def _analyze_version() -> int:
    out = _analyze("--version").stdout
    match = re.match(r"systemd (\d+)", out)
    assert match, out
    return int(match.group(1))


@needs_analyze
class TestVerify:
    def test_unit_verifies_without_any_output(self, tmp_path: Path) -> None:
        result = _verify(_unit_copy(tmp_path))
        print(f"systemd {_analyze_version()}: verify rc={result.returncode}")
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        assert result.stderr == ""


@needs_analyze
class TestVerifyHarness:
    """The verify flags really turn warnings about our unit into failures."""

    def test_unknown_key_fails(self, tmp_path: Path) -> None:
        text = UNIT.read_text(encoding="utf-8").replace(
            "[Service]\n", "[Service]\nNoSuchDirective=1\n", 1
        )
        result = _verify(_unit_copy(tmp_path, text))
        assert result.returncode != 0
        assert "NoSuchDirective" in result.stderr

    def test_missing_exec_start_binary_fails(self, tmp_path: Path) -> None:
        target = tmp_path / "pbxbridge.service"
        shutil.copy(UNIT, target)  # ExecStart=/usr/bin/pbxbridge, absent on a build host
        if Path(EXEC_START_BINARY).exists():
            pytest.skip(f"{EXEC_START_BINARY} is installed here")
        result = _verify(target)
        assert result.returncode != 0
        assert EXEC_START_BINARY in result.stderr


@needs_analyze
class TestSecurity:
    def test_overall_exposure(self, tmp_path: Path) -> None:
        unit = _unit_copy(tmp_path)
        result = _analyze("security", "--offline=true", "--no-pager", str(unit))
        assert result.returncode == 0, result.stderr
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
        assert match, result.stdout
        score = float(match.group(1))
        print(f"systemd-analyze security --offline=true pbxbridge.service: {score}")
        assert score <= MAX_EXPOSURE, result.stdout

    def test_only_accepted_exposures_remain(self, tmp_path: Path) -> None:
        unit = _unit_copy(tmp_path)
        result = _analyze("security", "--offline=true", "--json=short", "--no-pager", str(unit))
        assert result.returncode == 0, result.stderr
        checks = json.loads(result.stdout)
        exposed = {c["name"]: c["exposure"] for c in checks if c.get("exposure")}
        print("remaining exposures:", exposed)
        assert set(exposed) <= ACCEPTED_EXPOSURES, exposed


class TestUnitContents:
    """Properties the daemon relies on that verify cannot check."""

    def test_credential_ids_match_what_the_daemon_reads(self, tmp_path: Path) -> None:
        ids = {spec.split(":", 1)[0] for spec in _directives("LoadCredential")}
        assert ids == {
            "ari-password",
            "ami-password",
            "mqtt-password",
            "database-url",
            "web-session-password",
            "agi-secret",
        }
        for spec in _directives("LoadCredential"):
            source = spec.split(":", 1)[1]
            assert source.startswith("/etc/pbxbridge/credentials/")
        # The daemon really reads each of them from $CREDENTIALS_DIRECTORY.
        from pbxbridge.adapters.mqtt import MqttSettings
        from pbxbridge.runtime.settings import Settings

        for cred in ids:
            (tmp_path / cred).write_text(f"value-of-{cred}\n")
        env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
        settings = Settings.from_env(env)
        assert settings.ari_password == "value-of-ari-password"
        assert settings.ami_password == "value-of-ami-password"
        assert settings.database_url == "value-of-database-url"
        assert settings.web_session_secret == "value-of-web-session-password"
        assert settings.agi_secret == "value-of-agi-secret"
        mqtt = MqttSettings.from_env({**env, "PBXBRIDGE_MQTT_USER": "pbxbridge"})
        assert mqtt.password == "value-of-mqtt-password"

    def test_lifecycle(self) -> None:
        assert _directives("Type") == ["notify"]
        assert _directives("NotifyAccess") == ["main"]
        # Chosen from the measured restart + resync time: a frozen
        # daemon's calls are continued within ~10 s.
        assert _directives("WatchdogSec") == ["5"]
        assert _directives("TimeoutAbortSec") == ["5"]
        assert _directives("ExecReload") == ["/bin/kill -HUP $MAINPID"]
        assert _directives("ExecStart") == [
            f"{EXEC_START_BINARY} run --config /etc/pbxbridge/routing.yaml"
        ]

    def test_no_secrets_in_environment(self) -> None:
        for name in ("Environment", "EnvironmentFile"):
            for value in _directives(name):
                assert "PASSWORD" not in value.upper()


class TestEnvExample:
    VARIABLES = (
        "PBXBRIDGE_ARI_URL",
        "PBXBRIDGE_ARI_USER",
        "PBXBRIDGE_ARI_APP",
        "PBXBRIDGE_AMI_HOST",
        "PBXBRIDGE_AMI_PORT",
        "PBXBRIDGE_AMI_USER",
        "PBXBRIDGE_HTTP_BIND",
        "PBXBRIDGE_LOG_LEVEL",
    )

    def test_documents_every_variable(self) -> None:
        text = ENV_EXAMPLE.read_text(encoding="utf-8")
        for var in self.VARIABLES:
            assert re.search(rf"^#{var}=\S", text, re.MULTILINE), var

    def test_defaults(self) -> None:
        text = ENV_EXAMPLE.read_text(encoding="utf-8")
        assert "#PBXBRIDGE_ARI_URL=http://127.0.0.1:8088\n" in text
        assert "#PBXBRIDGE_ARI_USER=pbxbridge\n" in text
        assert "#PBXBRIDGE_ARI_APP=pbxbridge\n" in text
        assert "#PBXBRIDGE_HTTP_BIND=127.0.0.1:8090\n" in text

    def test_no_secret_assignments(self) -> None:
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
            assignment = line.lstrip("#").strip()
            if re.match(r"[A-Z_]+=", assignment):
                assert not re.search(r"PASSWORD|SECRET|TOKEN", assignment.split("=", 1)[0])


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers missing")
class TestSysusers:
    def test_creates_system_user(self, tmp_path: Path) -> None:
        (tmp_path / "etc").mkdir()
        result = _run("systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS))
        assert result.returncode == 0, result.stderr
        passwd = (tmp_path / "etc/passwd").read_text(encoding="utf-8")
        user = next(line for line in passwd.splitlines() if line.startswith("pbxbridge:"))
        _, _, uid, gid, _, home, shell = user.split(":")
        assert int(uid) < 1000
        assert home == "/var/lib/pbxbridge"
        assert shell.endswith("nologin")
        group = (tmp_path / "etc/group").read_text(encoding="utf-8")
        assert f"pbxbridge:x:{gid}:" in group


@pytest.mark.skipif(
    shutil.which("systemd-tmpfiles") is None or shutil.which("systemd-sysusers") is None,
    reason="systemd-tmpfiles/systemd-sysusers missing",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="chown in the tmpfiles root needs root")
class TestTmpfiles:
    def test_creates_locked_down_config_tree(self, tmp_path: Path) -> None:
        (tmp_path / "etc").mkdir()
        assert _run("systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)).returncode == 0
        gid = next(
            int(line.split(":")[2])
            for line in (tmp_path / "etc/group").read_text(encoding="utf-8").splitlines()
            if line.startswith("pbxbridge:")
        )
        mqtt = tmp_path / "etc/pbxbridge/credentials/mqtt-password"
        result = _run("systemd-tmpfiles", f"--root={tmp_path}", "--create", str(TMPFILES))
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""

        etc = (tmp_path / "etc/pbxbridge").stat()
        assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o7777) == (0, gid, 0o750)
        creds = (tmp_path / "etc/pbxbridge/credentials").stat()
        assert (creds.st_uid, creds.st_gid, creds.st_mode & 0o7777) == (0, 0, 0o700)
        assert mqtt.stat().st_mode & 0o7777 == 0o600
        assert mqtt.read_bytes() == b""
        # Required secrets are not created: a missing one must fail the start.
        assert not (tmp_path / "etc/pbxbridge/credentials/ari-password").exists()

    def test_never_overwrites_an_existing_password(self, tmp_path: Path) -> None:
        (tmp_path / "etc").mkdir()
        assert _run("systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)).returncode == 0
        creds = tmp_path / "etc/pbxbridge/credentials"
        creds.mkdir(parents=True)
        (creds / "mqtt-password").write_text("s3cret\n", encoding="utf-8")
        result = _run("systemd-tmpfiles", f"--root={tmp_path}", "--create", str(TMPFILES))
        assert result.returncode == 0, result.stderr
        assert (creds / "mqtt-password").read_text(encoding="utf-8") == "s3cret\n"
        assert (creds / "mqtt-password").stat().st_mode & 0o7777 == 0o600
