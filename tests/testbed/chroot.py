"""The Debian sid chroot that holds Asterisk 22, and the host tools around it.

Debian 12 (the machine's release) has no ``asterisk`` package; sid has 22.x.
Installing sid packages on the host would upgrade its libc, so Asterisk lives in a
``debootstrap --variant=minbase sid`` chroot.  Building it takes well under a minute
on the CI machine; it is then reused as long as its marker file says the build
finished with the current recipe.

Everything here is written to survive a crash at any point: a half-built tree is
never reused (it is built under ``<root>.partial`` and renamed only when complete),
stale mounts below the root are detected from ``/proc/self/mountinfo`` and stale
Asterisk processes from ``/proc/<pid>/root``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: Default location of the chroot; override with ``PBXBRIDGE_TESTBED_ROOT``.
DEFAULT_ROOT = Path("/var/cache/pbxbridge/testbed-sid")
ROOT_ENV = "PBXBRIDGE_TESTBED_ROOT"
#: Optional override of the Debian mirror (otherwise read from the host's apt sources).
MIRROR_ENV = "PBXBRIDGE_TESTBED_MIRROR"

SUITE = "sid"
PACKAGES: tuple[str, ...] = ("asterisk", "asterisk-modules", "asterisk-config")
#: Bump when the build recipe changes: an older chroot is then rebuilt.
RECIPE_VERSION = 1
MARKER_NAME = ".pbxbridge-testbed.json"
ASTERISK_BIN = "/usr/sbin/asterisk"

HOST_PACKAGES: dict[str, str] = {"sipp": "sip-tester", "debootstrap": "debootstrap"}

_APT_SOURCES = (
    Path("/etc/apt/sources.list.d/debian.sources"),
    Path("/etc/apt/sources.list"),
)


class TestbedError(RuntimeError):
    """The test bed could not be built, started or stopped."""

    __test__ = False


def log(msg: str) -> None:
    """Print a progress line to stderr (stdout is kept for machine-readable output).

    Args:
        msg: The message.
    """
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def default_root() -> Path:
    """The chroot location: ``$PBXBRIDGE_TESTBED_ROOT`` or the default.

    Returns:
        Absolute path of the chroot.
    """
    env = os.environ.get(ROOT_ENV, "").strip()
    return Path(env).absolute() if env else DEFAULT_ROOT


def _run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    log_to: Path | None = None,
    pid_file: Path | None = None,
) -> None:
    """Run a command, raising :class:`TestbedError` with its output tail on failure.

    Args:
        cmd: Command and arguments.
        env: Extra environment variables.
        log_to: Append output to this file instead of capturing it.
        pid_file: Record the command's process group here while it runs, so a
            later run can end it should this process die first (see
            :func:`kill_recorded_build`).
    """
    full_env = {**os.environ, **(env or {})}
    if log_to is None:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=full_env,
        )
        if proc.returncode != 0:
            raise TestbedError(
                f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n"
                f"{(proc.stdout + proc.stderr)[-3000:]}"
            )
        return
    log_to.parent.mkdir(parents=True, exist_ok=True)
    with log_to.open("ab") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n".encode())
        fh.flush()
        # own process group: on Ctrl-C or an exception the whole tree (debootstrap
        # forks dpkg, apt forks dpkg and maintainer scripts) is ended below
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
        if pid_file is not None:
            pid_file.write_text(f"{child.pid}\n")
        try:
            rc = child.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
        finally:
            if pid_file is not None:
                pid_file.unlink(missing_ok=True)
    if rc != 0:
        tail = log_to.read_text(errors="replace")[-3000:]
        raise TestbedError(f"{' '.join(cmd)} failed with exit code {rc}:\n{tail}")


def kill_recorded_build(pid_file: Path, build_dir: Path) -> None:
    """End a build step left running by a test bed process that was killed.

    Only the process group recorded in ``pid_file`` is signalled, and only when
    its leader still is a build command: debootstrap, or a process inside
    ``build_dir`` (``chroot`` execs apt-get there).

    Args:
        pid_file: File written by :func:`_run`.
        build_dir: The partial chroot being built.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        cmdline = b""
    try:
        proc_root = os.readlink(f"/proc/{pid}/root")
    except OSError:
        proc_root = ""
    target = str(build_dir.resolve(strict=False))
    in_build = proc_root == target or proc_root.startswith(target + "/")
    if b"debootstrap" in cmdline or cmdline.startswith(b"chroot ") or in_build:
        log(f"ending build process group {pid} left over from a killed run")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


# --------------------------------------------------------------------------- mirror


def debian_mirror() -> str:
    """The Debian mirror the host already uses.

    Read at run time from the host's apt sources (deb822 ``debian.sources`` or the
    one-line ``sources.list``); never hard-coded, so the repository names no host.

    Returns:
        The mirror URI, e.g. ``http://<host>/debian``.

    Raises:
        TestbedError: No usable (non-security) ``deb`` source was found.
    """
    override = os.environ.get(MIRROR_ENV, "").strip()
    if override:
        return override
    for path in _APT_SOURCES:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        uri = _mirror_from_deb822(text) if path.suffix == ".sources" else _mirror_from_list(text)
        if uri:
            return uri
    raise TestbedError(
        "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources or "
        f"/etc/apt/sources.list; set {MIRROR_ENV}"
    )


def _mirror_from_deb822(text: str) -> str | None:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        # the security archive has a different layout (suite-security) and no sid
        if any(s.endswith("-security") for s in suites):
            continue
        for uri in fields.get("uris", "").split():
            if uri.startswith(("http://", "https://")):
                return uri.rstrip("/")
    return None


def _mirror_from_list(text: str) -> str | None:
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) < 3 or parts[0] != "deb":
            continue
        # skip "[option=value ...]" blocks
        rest = [p for p in parts[1:] if not (p.startswith("[") or p.endswith("]"))]
        if len(rest) >= 2 and not rest[1].endswith("-security"):
            return rest[0].rstrip("/")
    return None


# --------------------------------------------------------------------- host tools


def ensure_host_tools() -> None:
    """Install ``sipp`` (package ``sip-tester``) and ``debootstrap`` when missing.

    Raises:
        TestbedError: apt-get failed or we are not root.
    """
    missing = [pkg for binary, pkg in HOST_PACKAGES.items() if shutil.which(binary) is None]
    # debootstrap lives in /usr/sbin, which a non-login PATH may lack
    if "debootstrap" in missing and Path("/usr/sbin/debootstrap").exists():
        missing.remove("debootstrap")
    if not missing:
        return
    if os.geteuid() != 0:
        raise TestbedError(f"need root to install host packages {missing}")
    log(f"installing host packages: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(["apt-get", "install", "-y", "-q", *missing], env=env)
    except TestbedError:
        # a fresh machine has no package lists yet
        _run(["apt-get", "update", "-q"], env=env)
        _run(["apt-get", "install", "-y", "-q", *missing], env=env)


# ------------------------------------------------------------------------- mounts


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (the order to unmount them).

    Args:
        root: The chroot directory.

    Returns:
        Mount points.
    """
    root_s = str(root.resolve(strict=False))
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            mp = _unescape_mountinfo(line.split()[4])
            if mp == root_s or mp.startswith(root_s + "/"):
                found.append(Path(mp))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mounted(path: Path) -> bool:
    """Whether ``path`` itself is a mount point.

    Args:
        path: Directory.

    Returns:
        True when mounted.
    """
    target = str(path.resolve(strict=False))
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        return any(_unescape_mountinfo(line.split()[4]) == target for line in fh)


def unmount_all(root: Path) -> None:
    """Unmount everything below ``root`` (stale mounts from a crashed run included).

    Args:
        root: The chroot directory.

    Raises:
        TestbedError: A mount point could not be detached even lazily.
    """
    for mp in mounts_under(root):
        proc = subprocess.run(["umount", str(mp)], capture_output=True, text=True)
        if proc.returncode != 0:
            # busy (a process still has a cwd there): detach lazily; the kernel frees it
            # when the last user goes away, and the path is free for a new mount now
            proc = subprocess.run(["umount", "-l", str(mp)], capture_output=True, text=True)
            if proc.returncode != 0 and is_mounted(mp):
                raise TestbedError(f"cannot unmount {mp}: {proc.stderr.strip()}")


def mount_proc(root: Path) -> None:
    """Mount ``/proc`` in the chroot unless it already is.

    Args:
        root: The chroot directory.
    """
    target = root / "proc"
    target.mkdir(exist_ok=True)
    if not is_mounted(target):
        _run(["mount", "-t", "proc", "proc", str(target)])


# ---------------------------------------------------------------------- processes


def chroot_pids(root: Path) -> list[int]:
    """Processes whose root directory is this chroot (i.e. that we started in it).

    Args:
        root: The chroot directory.

    Returns:
        PIDs, excluding our own.
    """
    target = str(root.resolve(strict=False))
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            proc_root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if proc_root == target or proc_root.startswith(target + "/"):
            pids.append(pid)
    return pids


def kill_chroot_processes(root: Path, *, grace: float = 3.0) -> list[int]:
    """Terminate every process running inside the chroot: SIGTERM, then SIGKILL.

    Args:
        root: The chroot directory.
        grace: Seconds between SIGTERM and SIGKILL.

    Returns:
        The PIDs that were signalled.
    """
    pids = chroot_pids(root)
    if not pids:
        return []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# -------------------------------------------------------------------------- lock


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialise ensure/up/down between processes (e.g. parallel pytest sessions).

    Args:
        root: The chroot directory; the lock file sits beside it.

    Yields:
        Nothing; the lock is held inside the ``with`` block.
    """
    lock_path = root.parent / f".{root.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------------- build


def marker_path(root: Path) -> Path:
    """Path of the "build finished" marker file.

    Args:
        root: The chroot directory.

    Returns:
        The marker path.
    """
    return root / MARKER_NAME


def is_intact(root: Path) -> bool:
    """Whether ``root`` holds a finished build of the current recipe.

    Args:
        root: The chroot directory.

    Returns:
        True when it can be reused.
    """
    try:
        marker = json.loads(marker_path(root).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("recipe") != RECIPE_VERSION:
        return False
    return (root / ASTERISK_BIN.lstrip("/")).is_file() and any(
        (root / "usr/lib").glob("*/asterisk/modules/app_queue.so")
    )


def remove_tree(path: Path) -> None:
    """Delete a (partial) chroot safely.

    Args:
        path: Directory to delete.
    """
    if not path.exists():
        return
    kill_chroot_processes(path)
    unmount_all(path)
    # --one-file-system: should a mount have survived (e.g. a bind mount of the host's
    # /dev), never descend into it and delete the host's files
    _run(["rm", "-rf", "--one-file-system", str(path)])


def ensure_chroot(root: Path | None = None) -> Path:
    """Build the sid chroot with Asterisk, or reuse an intact one.

    Safe to re-run and after a crash.  Takes the lock; do not call it with the lock
    already held by this process (use :func:`ensure_chroot_locked`).

    Args:
        root: Chroot location (default :func:`default_root`).

    Returns:
        The chroot path.
    """
    root = root or default_root()
    with locked(root):
        return ensure_chroot_locked(root)


def ensure_chroot_locked(root: Path) -> Path:
    """:func:`ensure_chroot` for a caller that already holds :func:`locked`.

    Args:
        root: Chroot location.

    Returns:
        The chroot path.

    Raises:
        TestbedError: Building failed.
    """
    ensure_host_tools()
    if is_intact(root):
        return root
    if os.geteuid() != 0:
        raise TestbedError("building the Asterisk chroot needs root (debootstrap, chroot)")
    if root.exists():
        log(f"{root} exists but is not a finished build: rebuilding")
        remove_tree(root)
    partial = root.with_name(root.name + ".partial")
    pid_file = root.with_name(root.name + ".build.pid")
    kill_recorded_build(pid_file, partial)  # a build whose driver was killed may still run
    remove_tree(partial)  # left over from a crashed build
    partial.parent.mkdir(parents=True, exist_ok=True)
    build_log = root.with_name(root.name + ".build.log")
    build_log.unlink(missing_ok=True)
    mirror = debian_mirror()
    started = time.monotonic()
    log(f"debootstrap {SUITE} into {partial} (log: {build_log})")
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    try:
        _run(
            [debootstrap, "--variant=minbase", SUITE, str(partial), mirror],
            log_to=build_log,
            pid_file=pid_file,
        )
        # Package maintainer scripts must not start the distribution's own Asterisk
        # (it would bind 0.0.0.0:5060 with the sample config): policy-rc.d says no.
        policy = partial / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# pbxbridge test bed: never start services\nexit 101\n")
        policy.chmod(0o755)
        mount_proc(partial)
        try:
            log(f"apt-get install {' '.join(PACKAGES)} in the chroot")
            _run(
                [
                    "chroot",
                    str(partial),
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    *PACKAGES,
                ],
                env={"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"},
                log_to=build_log,
                pid_file=pid_file,
            )
            _run(["chroot", str(partial), "apt-get", "clean"], log_to=build_log)
            version = subprocess.run(
                ["chroot", str(partial), "dpkg-query", "-W", "-f=${Version}", "asterisk"],
                capture_output=True,
                text=True,
            ).stdout.strip()
        finally:
            unmount_all(partial)
        marker_path(partial).write_text(
            json.dumps(
                {
                    "recipe": RECIPE_VERSION,
                    "suite": SUITE,
                    "packages": list(PACKAGES),
                    "asterisk_version": version,
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "build_seconds": round(time.monotonic() - started, 1),
                },
                indent=2,
            )
            + "\n"
        )
        partial.rename(root)
    except BaseException:
        # leave nothing mounted behind; the partial tree is removed on the next run
        unmount_all(partial)
        raise
    log(f"chroot ready in {time.monotonic() - started:.1f}s (Asterisk {version})")
    return root


def chroot_info(root: Path) -> dict[str, object]:
    """The build marker of an intact chroot.

    Args:
        root: The chroot directory.

    Returns:
        The marker's content, or an empty dict.
    """
    try:
        data = json.loads(marker_path(root).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
