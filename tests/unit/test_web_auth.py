"""Agent page: password hashes, the agents file, sessions, CSRF tokens, sign-in limits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbxbridge.runtime.settings import Settings
from pbxbridge.web.agents import (
    Agent,
    AgentsFile,
    AgentsFileError,
    agents_file_line,
    parse_agents,
)
from pbxbridge.web.passwords import (
    PasswordFormatError,
    dummy_hash,
    hash_password,
    parse_hash,
    verify_password,
)
from pbxbridge.web.sessions import LoginLimiter, SessionManager

FAST = 10  # scrypt cost for tests (the CLI default is 15)
REPO = Path(__file__).resolve().parents[2]


class TestPasswords:
    def test_round_trip_and_self_describing(self) -> None:
        hashed = hash_password("Sommer 2026!", ln=FAST)
        assert hashed.startswith(f"$scrypt$ln={FAST},r=8,p=1$")
        parsed = parse_hash(hashed)
        assert verify_password("Sommer 2026!", parsed)
        assert not verify_password("sommer 2026!", parsed)
        assert not verify_password("", parsed)
        assert parsed.text() == hashed

    def test_salted(self) -> None:
        assert hash_password("x", ln=FAST) != hash_password("x", ln=FAST)

    def test_unicode_password(self) -> None:
        parsed = parse_hash(hash_password("Grüße äöü ß", ln=FAST))
        assert verify_password("Grüße äöü ß", parsed)

    @pytest.mark.parametrize(
        "text",
        [
            "geheim",  # a plain password is not a hash
            "$scrypt$ln=15,r=8$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
            "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
            "$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
            "$scrypt$ln=15,r=8,p=1$!!!$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
            "$bcrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
            "$scrypt$ln=15,ln=15,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
        ],
    )
    def test_bad_hashes_refused(self, text: str) -> None:
        with pytest.raises(PasswordFormatError):
            parse_hash(text)

    def test_overlong_password(self) -> None:
        parsed = parse_hash(hash_password("x", ln=FAST))
        assert not verify_password("x" * 5000, parsed)
        with pytest.raises(ValueError, match="1 to 1024"):
            hash_password("x" * 5000, ln=FAST)

    def test_dummy_matches_nothing(self) -> None:
        assert not verify_password("anything", dummy_hash(FAST))


def agents_text(**passwords: str) -> str:
    return "\n".join(agents_file_line(a, hash_password(p, ln=FAST)) for a, p in passwords.items())


class TestAgentsFile:
    def test_simple_lines_and_details(self) -> None:
        text = (
            agents_text(agent1="a")
            + "\n"
            + (
                "agent2:\n"
                f"  password: {hash_password('b', ln=FAST)}\n"
                "  name: Anna Schmidt\n"
                "  supervisor: true\n"
            )
        )
        agents = parse_agents(text)
        assert set(agents) == {"agent1", "agent2"}
        assert agents["agent1"].name == "agent1" and not agents["agent1"].supervisor
        assert agents["agent2"].name == "Anna Schmidt" and agents["agent2"].supervisor
        assert verify_password("b", agents["agent2"].password)

    @pytest.mark.parametrize("agent", ["1001", "yes", "agent one", "a:b"])
    def test_line_for_odd_ids_reads_back(self, agent: str) -> None:
        line = agents_file_line(agent, hash_password("p", ln=FAST))
        assert set(parse_agents(line)) == {agent}

    def test_plain_password_refused_with_hint(self) -> None:
        with pytest.raises(AgentsFileError, match="agent-password"):
            parse_agents("agent1: geheim\n")

    def test_not_a_mapping(self) -> None:
        with pytest.raises(AgentsFileError, match="mapping"):
            parse_agents("- agent1\n")

    def test_unknown_keys(self) -> None:
        with pytest.raises(AgentsFileError, match="unknown keys"):
            parse_agents(f"agent1:\n  password: {hash_password('a', ln=FAST)}\n  pin: 1\n")

    def test_reload_and_keep_last_good(self, tmp_path: Path) -> None:
        path = tmp_path / "agents.yaml"
        path.write_text(agents_text(agent1="a"), encoding="utf-8")
        path.chmod(0o600)
        agents = AgentsFile(path, check_interval=0)
        assert set(agents.agents()) == {"agent1"} and agents.error is None
        path.write_text(agents_text(agent1="a", agent2="b"), encoding="utf-8")
        os.utime(path, (time.time() + 5, time.time() + 5))
        assert set(agents.agents()) == {"agent1", "agent2"}
        path.write_text("agent3: not-a-hash\n", encoding="utf-8")
        os.utime(path, (time.time() + 10, time.time() + 10))
        assert set(agents.agents()) == {"agent1", "agent2"}  # broken edit: last good kept
        assert agents.error is not None and "agent3" in agents.error

    def test_missing_file(self, tmp_path: Path) -> None:
        agents = AgentsFile(tmp_path / "nope.yaml")
        assert agents.agents() == {} and not agents.loaded
        assert agents.error is not None and "cannot read" in agents.error


class TestSessions:
    def make(self) -> tuple[SessionManager, list[float], dict[str, Agent]]:
        now = [1_800_000_000.0]
        agents = parse_agents(agents_text(agent1="a", agent2="b"))
        return SessionManager(b"k" * 32, clock=lambda: now[0]), now, dict(agents)

    def test_issue_and_check(self) -> None:
        sessions, _, agents = self.make()
        session = sessions.issue(agents["agent1"])
        back = sessions.check(session.token, agents.get)
        assert back is not None and back.agent.id == "agent1" and back.csrf == session.csrf

    def test_forged_tokens(self) -> None:
        sessions, _, agents = self.make()
        token = sessions.issue(agents["agent1"]).token
        v, agent, issued, nonce, mac = token.split(".")
        other = sessions.issue(agents["agent2"]).token.split(".")[1]
        forged = [
            f"{v}.{other}.{issued}.{nonce}.{mac}",  # another agent's id
            f"{v}.{agent}.{int(issued) + 3600}.{nonce}.{mac}",  # extended
            f"{v}.{agent}.{issued}.{nonce}.{mac[:-2]}AA",
            "v1.x.y.z.w",
            "",
            "a" * 5000,
        ]
        for token in forged:
            assert sessions.check(token, agents.get) is None
        other_key = SessionManager(b"j" * 32)
        assert other_key.check(token, agents.get) is None

    def test_expiry_revocation_and_password_change(self) -> None:
        sessions, now, agents = self.make()
        session = sessions.issue(agents["agent1"])
        now[0] += 11 * 3600
        assert sessions.check(session.token, agents.get) is not None
        now[0] += 2 * 3600
        assert sessions.check(session.token, agents.get) is None
        session = sessions.issue(agents["agent1"])
        sessions.revoke(session)
        assert sessions.check(session.token, agents.get) is None
        session = sessions.issue(agents["agent1"])
        changed = parse_agents(agents_text(agent1="new"))
        assert sessions.check(session.token, lambda a: changed.get(a)) is None
        assert sessions.check(session.token, lambda a: None) is None  # agent removed

    def test_csrf(self) -> None:
        sessions, _, agents = self.make()
        one = sessions.issue(agents["agent1"])
        two = sessions.issue(agents["agent1"])
        assert sessions.csrf_ok(one, one.csrf)
        assert not sessions.csrf_ok(one, two.csrf)  # per session
        assert not sessions.csrf_ok(one, None)
        assert not sessions.csrf_ok(one, "")
        assert not sessions.csrf_ok(one, one.csrf[:-1] + "x")

    def test_login_token(self) -> None:
        sessions, now, _ = self.make()
        nonce = sessions.new_login_nonce()
        token = sessions.login_token(nonce)
        assert sessions.login_ok(nonce, token)
        assert not sessions.login_ok(sessions.new_login_nonce(), token)
        assert not sessions.login_ok(None, token)
        now[0] += 7200
        assert not sessions.login_ok(nonce, token)

    def test_short_secret_refused(self) -> None:
        with pytest.raises(ValueError):
            SessionManager(b"short")


class TestLimiter:
    def test_per_agent_and_per_address(self) -> None:
        now = [0.0]
        limiter = LoginLimiter(per_agent=3, per_address=5, window_s=60, clock=lambda: now[0])
        for _ in range(3):
            assert limiter.begin("agent1", "10.0.0.1") is not None
        assert limiter.begin("agent1", "10.0.0.2") is None
        assert limiter.retry_after("agent1", "10.0.0.2") == pytest.approx(60)
        assert limiter.begin("agent2", "10.0.0.1") is not None
        assert limiter.begin("agent3", "10.0.0.1") is not None
        assert limiter.begin("agent4", "10.0.0.1") is None  # the address is over its limit
        now[0] = 61
        assert limiter.retry_after("agent1", "10.0.0.1") == 0

    def test_counted_before_the_answer(self) -> None:
        # The old limiter counted a failure only after the hash was checked, so
        # concurrent attempts all passed the check; now each begin() counts.
        limiter = LoginLimiter(per_agent=5)
        admitted = [limiter.begin("agent1", "10.0.0.1") for _ in range(40)]
        assert sum(a is not None for a in admitted) == 5

    def test_success_refunds_and_clears_agent(self) -> None:
        limiter = LoginLimiter(per_agent=2)
        first = limiter.begin("agent1", "a")
        assert first is not None
        good = limiter.begin("agent1", "a")
        assert good is not None
        assert limiter.retry_after("agent1", "b") > 0
        limiter.succeeded(good)
        assert limiter.retry_after("agent1", "b") == 0

    def test_cancel_uncounts(self) -> None:
        limiter = LoginLimiter(per_agent=1)
        attempt = limiter.begin("agent1", "a")
        assert attempt is not None and limiter.begin("agent1", "a") is None
        limiter.cancel(attempt)
        assert limiter.begin("agent1", "a") is not None

    def test_known_client_not_locked_out_by_others(self) -> None:
        limiter = LoginLimiter(per_agent=5, per_address=20)
        good = limiter.begin("agent1", "10.0.0.7")
        assert good is not None
        limiter.succeeded(good)
        for i in range(30):  # an attacker elsewhere, 30 addresses
            limiter.begin("agent1", f"192.0.2.{i}")
        assert limiter.retry_after("agent1", "192.0.2.99") > 0  # strangers: locked
        assert limiter.retry_after("agent1", "10.0.0.7") == 0  # the agent's own PC: not
        # ... but the known client's own failures still count.
        for _ in range(5):
            assert limiter.begin("agent1", "10.0.0.7") is not None
        assert limiter.begin("agent1", "10.0.0.7") is None

    def test_growing_delay(self) -> None:
        limiter = LoginLimiter(per_address=20, delay_base_s=0.25, delay_max_s=4.0)
        delays = []
        for i in range(8):
            attempt = limiter.begin(f"agent{i}", "10.0.0.1")
            assert attempt is not None
            delays.append(limiter.delay(attempt))
        assert delays == [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]

    def test_bounded_memory(self) -> None:
        limiter = LoginLimiter(max_keys=100)
        for i in range(1000):
            limiter.begin(f"agent{i}", f"10.0.{i // 256}.{i % 256}")
        assert len(limiter._failures) <= 100


class TestSettingsAndCli:
    def test_settings(self, tmp_path: Path) -> None:
        secret = tmp_path / "web-session-password"
        secret.write_text("s3cret-value\n", encoding="utf-8")
        settings = Settings.from_env(
            {
                "PBXBRIDGE_AGENTS_FILE": "/etc/pbxbridge/agents.yaml",
                "PBXBRIDGE_WEB_SECURE_COOKIES": "yes",
                "CREDENTIALS_DIRECTORY": str(tmp_path),
            }
        )
        assert settings.web_agents_file == "/etc/pbxbridge/agents.yaml"
        assert settings.web_secure_cookies is True
        assert settings.web_session_secret == "s3cret-value"
        assert "s3cret" not in repr(settings)
        default = Settings.from_env({})
        assert default.web_agents_file == "" and default.web_secure_cookies is False
        assert default.web_session_secret == ""

    def test_agent_password_command(self) -> None:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pbxbridge",
                "agent-password",
                "--stdin",
                "--agent",
                "agent7",
                "--cost",
                str(FAST),
            ],
            input="Kennwort-123\n",
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        line = result.stdout.strip()
        assert line.startswith("agent7: $scrypt$") and "Kennwort" not in line
        agents = parse_agents(line)
        assert verify_password("Kennwort-123", agents["agent7"].password)

    def test_agent_password_refuses_empty(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "pbxbridge", "agent-password", "--stdin"],
            input="\n",
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
            timeout=60,
        )
        assert result.returncode == 1 and "empty password" in result.stderr

    @pytest.mark.parametrize(
        ("password", "ok"), [("kurz-123", False), ("123456789", False), ("0123456789", True)]
    )
    def test_agent_password_minimum_length(self, password: str, ok: bool) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "pbxbridge", "agent-password", "--stdin", "--cost", str(FAST)],
            input=password + "\n",
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
            timeout=60,
        )
        if ok:
            assert result.returncode == 0 and result.stdout.startswith("$scrypt$")
        else:
            assert result.returncode == 1 and "too short" in result.stderr
            assert "at least 10" in result.stderr and not result.stdout
