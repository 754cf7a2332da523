"""The host side of one sandboxed execution: its private files, the work dir's ownership, its command line.

Nothing here runs code. ``Execution`` writes the code, a copy of ``sandbox_launcher.py`` and the
launcher's JSON config into a private run dir, hands the work dir to the run uid when edgecrew is root
(and gives it back afterwards), and builds the command: the launcher alone, or the launcher inside
bubblewrap with a minimal read-only view of the system. Paths are never followed through symlinks.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgecrew.errors import ToolError

TierName = Literal["bwrap", "landlock", "rlimits"]
KiB, MiB = 1024, 1024 * 1024
LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc is not exposed whole: only what the dynamic linker, libc and Python need to start.
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
)
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
RUN_UID_BASE, RUN_UID_SPAN = 1_900_000_000, 50_000_000
MOUNTED_RUNDIR = "/run/edgecrew"


@dataclass(frozen=True)
class SandboxLimits:
    """Per-execution limits; memory, file size and open files are per process."""

    cpu_s: int = 10
    wall_s: float = 20.0
    memory_bytes: int = 512 * MiB
    processes: int = 64
    file_bytes: int = 16 * MiB
    open_files: int = 256
    output_bytes: int = 64 * KiB  # kept per stream
    disk_bytes: int = 256 * MiB  # new bytes in the work dir and the private /tmp together
    new_files: int = 10_000  # new entries in the work dir and the private /tmp together


@dataclass(frozen=True)
class SandboxTier:
    """A tier of isolation: its name, a sentence for ``edgecrew doctor``, and the layers it applies."""

    name: TierName
    detail: str
    isolation: list[str] = field(default_factory=list)
    weak: bool = False


def _python_for(euid: int) -> str | None:
    """An interpreter the sandboxed code can execute: ours, or a same-version one an unprivileged uid reaches."""
    ours = os.path.realpath(sys.executable)
    if euid != 0 or _world_reachable(ours):
        return ours
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/local/bin/{version}", f"/usr/bin/{version}"):
        if os.path.exists(candidate) and _world_reachable(os.path.realpath(candidate)):
            return os.path.realpath(candidate)
    return None


def _world_reachable(path: str) -> bool:
    """Whether any user may traverse to (and execute) ``path``."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (path, *map(str, Path(path).parents)))


def _snapshot(root: Path) -> dict[str, os.stat_result]:
    found: dict[str, os.stat_result] = {}
    todo = [root]
    while todo:
        current = todo.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found[os.path.relpath(entry.path, root)] = st
            if stat.S_ISDIR(st.st_mode):
                todo.append(Path(entry.path))
    return found


def usage(roots: list[Path]) -> tuple[int, int]:
    snaps = [_snapshot(r) for r in roots]
    return sum(s.st_size for snap in snaps for s in snap.values()), sum(len(snap) for snap in snaps)


class Execution:
    """Host-side files, ownership and the command line of one execution (a context manager)."""

    def __init__(
        self, tier: SandboxTier, kind: str, code: str, workdir: Path, limits: SandboxLimits, landlock_abi: int
    ) -> None:
        self.tier, self.workdir, self.limits, self.landlock_abi = tier, workdir, limits, landlock_abi
        self.bwrap = "bwrap" in tier.isolation
        self.uid = RUN_UID_BASE + secrets.randbelow(RUN_UID_SPAN) if "uid-drop" in tier.isolation else None
        self.python = _python_for(os.geteuid()) if not self.bwrap else os.path.realpath(sys.executable)
        if self.python is None and kind == "python":
            raise ToolError(
                f"the {tier.name} sandbox runs code as an unprivileged user, who cannot reach {sys.executable}; "
                f"install python{sys.version_info.major}.{sys.version_info.minor} under /usr or install bubblewrap"
            )
        self.kind, self.code = kind, code
        self.rundir = Path(tempfile.mkdtemp(prefix="edgecrew-sandbox-"))
        self.tmpdir = self.rundir / "tmp"
        self.r, self.w = -1, -1
        self.before: dict[str, os.stat_result] = {}
        self.owner: tuple[int, int] | None = None  # the work dir's owner, while the run uid holds it
        self.argv: list[str] = []
        self.launch_env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}

    def __enter__(self) -> Execution:
        try:
            self._prepare()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (self.r, self.w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.r = self.w = -1
        self.restore_owners()
        shutil.rmtree(self.rundir, ignore_errors=True)

    def _prepare(self) -> None:
        inside = MOUNTED_RUNDIR if self.bwrap else str(self.rundir)
        script = f"main.{'py' if self.kind == 'python' else 'sh'}"
        (self.rundir / script).write_text(self.code, encoding="utf-8")
        shutil.copyfile(LAUNCHER, self.rundir / "launcher.py")
        self.tmpdir.mkdir()
        self.before = _snapshot(self.workdir)
        tmp = "/tmp" if self.bwrap else str(self.tmpdir)
        # Under another uid, a work dir below a private dir (/root/...) is unreachable by its path: the
        # launcher then binds it, in a private mount namespace, on a reachable path inside the run dir.
        view = None
        if self.uid is not None and not self.bwrap and not _world_reachable(str(self.workdir.parent)):
            view = self.rundir / "work"
            view.mkdir()
        visible = str(view or self.workdir)
        env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": visible, "TMPDIR": tmp}
        if self.kind == "python":
            # -I without -E: no site, no user site, no script dir on sys.path; the work dir is.
            argv = [str(self.python), "-S", "-s", "-P", "-B", "-u", f"{inside}/{script}"]
            env["PYTHONPATH"] = visible
        else:
            argv = ["/bin/sh", f"{inside}/{script}"]
        self.r, self.w = os.pipe()
        cfg: dict[str, Any] = {
            "argv": argv,
            "env": env,
            "workdir": str(self.workdir),
            "view": str(view) if view else None,
            "status_fd": self.w,
            "rlimits": self._rlimits(),
            "nproc_offset": not ({"uid-drop", "bwrap", "netns-userns"} & set(self.tier.isolation)),
            "uid": self.uid,
            "gid": self.uid,
            "netns": {"netns": "root", "netns-userns": "userns"}.get(self._net_layer() or ""),
            "seccomp": "seccomp-net" in self.tier.isolation,
            "landlock": self._landlock(inside, tmp),
        }
        (self.rundir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
        if self.uid is not None:
            # Readable by the launcher (root without CAP_DAC_OVERRIDE in bwrap); only tmp/ belongs to the code.
            os.chmod(self.rundir, 0o711)
            for name in (script, "launcher.py", "config.json"):
                os.chmod(self.rundir / name, 0o644)
            os.chown(self.tmpdir, self.uid, self.uid)
            top = os.lstat(self.workdir)
            self.owner = (top.st_uid, top.st_gid)
            self._chown_tree(self.workdir, self.uid)
        launch = [os.path.realpath(sys.executable), "-I", "-S", f"{inside}/launcher.py", f"{inside}/config.json"]
        self.argv = [*self._bwrap_args(), *launch] if self.bwrap else launch

    def _net_layer(self) -> str | None:
        return next((x for x in ("netns", "netns-userns") if x in self.tier.isolation and not self.bwrap), None)

    def _rlimits(self) -> dict[str, int]:
        lim = self.limits
        return {
            "cpu": max(1, int(lim.cpu_s)),
            "memory": lim.memory_bytes,
            "processes": lim.processes,
            "file_bytes": lim.file_bytes,
            "open_files": lim.open_files,
            "core": 0,
        }

    def _readable(self) -> list[str]:
        """System dirs, the few /etc files, and the interpreter's prefixes when they are not under /usr."""
        if self.python is None:
            prefixes = set()
        elif self.python == os.path.realpath(sys.executable):
            prefixes = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
        else:
            prefixes = {str(Path(self.python).parent.parent)}
        return [*SYSTEM_DIRS, *ETC_FILES, *sorted(p for p in prefixes if p != "/usr" and not p.startswith("/usr/"))]

    def _landlock(self, rundir: str, tmp: str) -> dict[str, Any] | None:
        if "landlock-fs" not in self.tier.isolation:
            return None
        return {
            "abi": self.landlock_abi,
            "read": [*self._readable(), rundir, *(["/proc"] if self.bwrap else [])],
            "write": [str(self.workdir), tmp],
            "dev": list(DEVICES),
            "net": "landlock-net" in self.tier.isolation,
            "scope": "landlock-scope" in self.tier.isolation,
        }

    def _bwrap_args(self) -> list[str]:
        bwrap = shutil.which("bwrap", path=SAFE_PATH) or "bwrap"
        args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--die-with-parent", "--new-session"]
        if os.geteuid() == 0:
            # bwrap keeps every capability for root: keep only what the launcher needs to drop to the run uid.
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
        else:
            args += ["--unshare-user"]
        for path in self._readable():
            if os.path.islink(path) and path in SYSTEM_DIRS:
                args += ["--symlink", os.readlink(path), path]
            elif os.path.exists(path):
                args += [*self._parents(path), "--ro-bind", path, path]
        # /tmp is a host dir (watched for disk and file counts like the work dir): a tmpfs would be RAM.
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(MiB), "--tmpfs", "/dev/shm"]
        args += ["--bind", str(self.tmpdir), "/tmp"]
        work = str(self.workdir)
        args += [*self._parents(work), "--bind", work, work]
        args += [*self._parents(MOUNTED_RUNDIR), "--ro-bind", str(self.rundir), MOUNTED_RUNDIR]
        return [*args, "--chdir", work, "--remount-ro", "/", "--"]

    def _parents(self, path: str) -> list[str]:
        """Create a bind target's missing parents world-traversable (bwrap copies the host's modes)."""
        out: list[str] = []
        for parent in reversed(Path(path).parents):
            text = str(parent)
            if text in ("/", "/tmp", "/usr", "/dev", "/proc") or text.startswith("/usr/"):
                continue
            out += ["--perms", "0755", "--dir", text]
        return out

    def _chown_tree(self, root: Path, uid: int) -> None:
        """Hand the work dir to the run uid; never follow symlinks, never touch hard-linked files."""
        for rel, st in [(".", os.lstat(root)), *self.before.items()]:
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                continue
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                with contextlib.suppress(OSError):
                    os.chown(root / rel, uid, uid, follow_symlinks=False)

    def restore_owners(self) -> None:
        """Give back what the run uid owns: old entries to their old owner, new ones to the work dir's."""
        if self.uid is None or self.owner is None:
            return
        original = {rel: (st.st_uid, st.st_gid) for rel, st in self.before.items()}
        original["."] = self.owner
        for rel, st in [(".", os.lstat(self.workdir)), *_snapshot(self.workdir).items()]:
            if st.st_uid == self.uid:
                uid, gid = original.get(rel, self.owner)
                with contextlib.suppress(OSError):
                    os.chown(self.workdir / rel, uid, gid, follow_symlinks=False)
        self.owner = None

    def produced(self) -> list[str]:
        after = _snapshot(self.workdir)
        changed = []
        for rel, st in after.items():
            if stat.S_ISDIR(st.st_mode):
                continue
            old = self.before.get(rel)
            if old is None or (old.st_mtime_ns, old.st_size, old.st_ino) != (st.st_mtime_ns, st.st_size, st.st_ino):
                changed.append(rel)
        return sorted(changed)


def read_status(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 65536):
            data += chunk
    return data
