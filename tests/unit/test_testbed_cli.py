"""scripts/run.sh and the test bed CLI: the lock held for the whole run; the next steps printed.

The whole script builds and starts the Asterisk test bed; these tests run its
marked blocks alone, with a lock file and a state directory of their own.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.testbed.__main__ import LOCK_FD_ENV, take_lock
from tests.testbed.lock import LOCK_ENV

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


def run_sh_block(name: str) -> str:
    """The block of scripts/run.sh between ``# -- <name>`` and ``# -- end <name> --``."""
    text = (REPO / "scripts/run.sh").read_text(encoding="utf-8")
    return text[text.index(f"# -- {name}") : text.index(f"# -- end {name} --")]


def holds_lock(path: Path) -> bool:
    """Whether someone holds the flock on ``path`` (tried from a fresh open file)."""
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


@pytest.fixture
def lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "testbed.lock"
    monkeypatch.setenv(LOCK_ENV, str(path))
    monkeypatch.delenv(LOCK_FD_ENV, raising=False)
    return path


class TestTakeLock:
    def test_free_lock_is_taken_and_kept(self, lock_file: Path) -> None:
        keep, refused = take_lock()
        assert refused is None
        assert holds_lock(lock_file)
        del keep  # closing the file releases it
        assert not holds_lock(lock_file)

    def test_refused_while_someone_else_holds_it(self, lock_file: Path) -> None:
        with lock_file.open("w") as other:
            fcntl.flock(other, fcntl.LOCK_EX)
            keep, refused = take_lock()
            assert keep is None
            assert refused is not None and str(lock_file) in refused
            assert "scripts/run.sh" in refused  # one of the holders a newcomer meets

    def test_descriptor_inherited_from_the_holder_is_accepted(
        self, lock_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # What scripts/run.sh does: it holds the lock on fd 9 and runs `up`.
        with lock_file.open("w") as parent:
            fcntl.flock(parent, fcntl.LOCK_EX)
            monkeypatch.setenv(LOCK_FD_ENV, str(parent.fileno()))
            keep, refused = take_lock()
            assert refused is None and keep == parent.fileno()
            assert holds_lock(lock_file)  # still held for the parent
            # Without the variable the same process is refused: a new open
            # file collides with the parent's lock.
            monkeypatch.delenv(LOCK_FD_ENV)
            assert take_lock()[1] is not None

    def test_descriptor_of_another_file_is_refused(
        self, lock_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with lock_file.open("w") as holder, (tmp_path / "other").open("w") as other:
            fcntl.flock(holder, fcntl.LOCK_EX)
            monkeypatch.setenv(LOCK_FD_ENV, str(other.fileno()))
            keep, refused = take_lock()
            assert keep is None
            assert refused is not None and "not an open descriptor" in refused

    def test_descriptor_that_does_not_hold_the_busy_lock_is_refused(
        self, lock_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with lock_file.open("w") as holder, lock_file.open("a") as mine:
            fcntl.flock(holder, fcntl.LOCK_EX)
            monkeypatch.setenv(LOCK_FD_ENV, str(mine.fileno()))
            keep, refused = take_lock()
            assert keep is None and refused is not None and "in use" in refused

    def test_not_a_number(self, lock_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(LOCK_FD_ENV, "nine")
        keep, refused = take_lock()
        assert keep is None
        assert refused is not None and refused.startswith(f"{LOCK_FD_ENV}='nine' is not an open")


# ------------------------------------------------------------------ scripts/run.sh


def test_run_sh_holds_the_lock_for_its_children(tmp_path: Path) -> None:
    """The lock block, then a child as `up` would run: it gets the lock; a
    separate session (pytest, a benchmark) does not, until the script ends."""
    lock = tmp_path / "testbed.lock"
    child = (
        "from tests.testbed.__main__ import take_lock; "
        "keep, refused = take_lock(); print('child:', refused or 'held')"
    )
    probe = (
        "import fcntl, sys; f = open(sys.argv[1], 'a')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('other: free')\n"
        "except BlockingIOError:\n    print('other: busy')"
    )
    script = (
        "set -euo pipefail\n"
        + run_sh_block("test bed lock")
        + f"python -c {sh_quote(child)}\n"
        + f"python -c {sh_quote(probe)} {sh_quote(str(lock))}\n"
    )
    env = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", LOCK_ENV: str(lock)}
    done = subprocess.run(
        ["bash", "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["child: held", "other: busy"]
    assert not holds_lock(lock)  # released when the script ended

    # Busy when the script starts: it says why it waits (and waits).
    with lock.open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        waiting = subprocess.Popen(
            ["bash", "-c", script],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiting.stderr is not None
        line = waiting.stderr.readline()
        assert f"waiting for the test bed lock {lock}" in line
        assert waiting.poll() is None
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0
    assert out.splitlines() == ["child: held", "other: busy"]


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def next_steps(state: Path) -> str:
    """Run the next-steps block of scripts/run.sh with ``state`` as STATE_DIRECTORY."""
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + run_sh_block("next steps")],
        env={
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "STATE_DIRECTORY": str(state),
            "http_bind": "127.0.0.1:8090",
        },
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def in_printed_shell(out: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` after the printed `cd ... && export ...` line, in a shell
    that has neither the venv on PATH nor STATE_DIRECTORY (a new terminal)."""
    setup = next(line.strip() for line in out.splitlines() if line.strip().startswith("cd "))
    env = {k: v for k, v in os.environ.items() if k not in {"STATE_DIRECTORY", "VIRTUAL_ENV"}}
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV_BIN and p != str(VENV_BIN)
    )
    return subprocess.run(
        ["bash", "-c", f"set -e\n{setup}\n{command}"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )


def override(out: str, *args: str) -> None:
    done = in_printed_shell(out, "pbxbridge override " + " ".join(args))
    assert done.returncode == 0, done.stderr


def test_run_sh_next_steps_reach_the_daemons_state(tmp_path: Path) -> None:
    state = tmp_path / "var"
    out = next_steps(state)
    assert "python -m tests.testbed call --did 044077300 --caller 04407123456" in out
    assert "curl -s 127.0.0.1:8090/healthz" in out
    # Forced closed (whatever the time of day): the script says so and prints
    # the override that opens Wardenburg.
    override(out, "set -c config/routing.yaml --tenant wardenburg --closed --reason t --for 1h")
    assert (state / "pbxbridge.sqlite").is_file()  # the printed shell wrote the daemon's state
    closed = next_steps(state)
    assert 'Wardenburg is not open now (the call would be "closed", no pop)' in closed
    printed = re.search(r"^  (pbxbridge override set .*)$", closed, re.M)
    assert printed is not None
    override(out, "clear -c config/routing.yaml --tenant wardenburg")
    # The printed override, typed in the printed shell, opens it for the daemon.
    done = in_printed_shell(out, printed.group(1))
    assert done.returncode == 0, done.stderr
    opened = next_steps(state)
    assert "not open now" not in opened
    explained = in_printed_shell(
        out, "pbxbridge explain -c config/routing.yaml --did 044077300 --caller 04407123456"
    )
    assert re.search(r"^action:\s+queue$", explained.stdout, re.M), explained.stdout


def test_printed_shell_has_the_venv_commands(tmp_path: Path) -> None:
    done = in_printed_shell(next_steps(tmp_path / "var"), "command -v pbxbridge python")
    assert done.stdout.splitlines() == [str(VENV_BIN / "pbxbridge"), str(VENV_BIN / "python")]


def test_vhold_demo_says_how_to_stop_asterisk(
    lock_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo brings Asterisk up and leaves it running; a newcomer is told
    # how to stop it. The demo itself is replaced (it needs the real test bed).
    from tests.testbed import __main__ as cli
    from tests.testbed import vhold_demo

    monkeypatch.setattr(vhold_demo, "run", lambda tb: 1)
    assert cli.main(["vhold-demo"]) == 1  # the demo's own status
    assert "python -m tests.testbed down` stops it" in capsys.readouterr().err
