"""The child side of the sandbox: a tiny supervisor that confines and runs one piece of generated code.

It is run as a script (``python -I -S sandbox_launcher.py CONFIG``), never imported by edgecrew's own
process, and uses the standard library only: the sandbox copies this file next to the code it runs.
The one design decision: the launcher forks the payload and *stays outside its confinement*. The payload
applies every layer to itself (network namespace, unprivileged uid, rlimits, ``no_new_privs``, Landlock,
seccomp) and then execs the code; the launcher is a child subreaper, so every descendant the code leaves
behind (double forks, ``setsid`` escapes) is reparented to it and killed when the code exits or when the
parent asks it to stop (SIGTERM). The code cannot signal the launcher: it runs under another uid (when
edgecrew is root) or in a Landlock domain scoped for signals. ``--probe`` reports what the kernel allows.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import resource
import signal
import struct
import sys
import time
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
CLONE_NEWNET = 0x40000000
NR_LANDLOCK_CREATE_RULESET, NR_LANDLOCK_ADD_RULE, NR_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
# Landlock filesystem rights (bit i), in the order the kernel numbers them.
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_TRUNCATE, FS_IOCTL_DEV = 1 << 14, 1 << 15
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2
# audit arch, socket, io_uring_setup (io_uring can open sockets without the socket syscall)
SECCOMP_ARCHES = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}
RLIMITS = {
    "cpu": "RLIMIT_CPU",
    "memory": "RLIMIT_AS",
    "processes": "RLIMIT_NPROC",
    "file_bytes": "RLIMIT_FSIZE",
    "open_files": "RLIMIT_NOFILE",
    "core": "RLIMIT_CORE",
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64))


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _Terminate(Exception):
    pass


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _prctl(option: int, arg: int | ctypes.c_void_p = 0) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl({option})")


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers, 0 when it offers none."""
    version = _libc.syscall(NR_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION)
    return max(int(version), 0)


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def landlock_ruleset(spec: dict[str, Any]) -> int:
    """Build a ruleset from ``{abi, read, write, dev, net, scope}`` and return its fd (not yet enforced)."""
    abi = min(int(spec["abi"]), 6)
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, 0, 0)
    if abi >= 4 and spec.get("net"):
        attr.net = NET_BIND_TCP | NET_CONNECT_TCP  # handled with no rule: every TCP bind and connect denied
    if abi >= 6 and spec.get("scope"):
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _check(_libc.syscall(NR_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0), "ruleset")
    read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    device = (FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE) & handled
    for paths, rights in ((spec["read"], read), (spec["write"], handled), (spec["dev"], device)):
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # absent on this machine (or in this mount namespace)
            try:
                allowed = rights if os.path.isdir(path) else rights & FS_FILE_RIGHTS
                rule = _PathBeneath(allowed, fd)
                _check(
                    _libc.syscall(NR_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                    path,
                )
            finally:
                os.close(fd)
    return ruleset


def seccomp_deny_network() -> None:
    """Install a filter: socket() only for AF_UNIX, no io_uring, no foreign syscall ABI (needs no_new_privs)."""
    arch, nr_socket, nr_io_uring = SECCOMP_ARCHES[platform.machine()]
    allow, kill, eacces, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | errno.EACCES, 0x00050000 | errno.ENOSYS
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    program = [
        (ld, 0, 0, 4),  # 0 arch
        (jeq, 1, 0, arch),  # 1
        (ret, 0, 0, kill),  # 2
        (ld, 0, 0, 0),  # 3 syscall number
        (jge, 5, 0, 0x40000000),  # 4 x32 ABI -> ENOSYS (10)
        (jeq, 4, 0, nr_io_uring),  # 5 -> ENOSYS (10)
        (jeq, 0, 4, nr_socket),  # 6 not socket -> allow (11)
        (ld, 0, 0, 16),  # 7 args[0], the address family
        (jeq, 2, 0, 1),  # 8 AF_UNIX -> allow (11)
        (ret, 0, 0, eacces),  # 9
        (ret, 0, 0, enosys),  # 10
        (ret, 0, 0, allow),  # 11
    ]
    raw = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(raw)

    class _Prog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    prog = _Prog(len(program), ctypes.cast(buf, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def unshare_network(mode: str) -> None:
    """``root``: a new network namespace; ``userns``: a user namespace first, mapping our own ids."""
    if mode == "root":
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        return
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")
    _write_file("/proc/self/setgroups", "deny")
    _write_file("/proc/self/uid_map", f"{uid} {uid} 1")
    _write_file("/proc/self/gid_map", f"{gid} {gid} 1")


def bind_workdir(workdir: str, view: str) -> None:
    """In a private mount namespace (we are root here), show the work dir at ``view`` as well."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None), "mount --make-rprivate /")
    _check(_libc.mount(workdir.encode(), view.encode(), None, ctypes.c_ulong(MS_BIND | MS_REC), None), "bind mount")


def _task_counts() -> dict[int, int]:
    """Threads per real uid, which is what RLIMIT_NPROC counts outside a user namespace."""
    counts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                uid = os.stat(f"/proc/{name}").st_uid
                counts[uid] = counts.get(uid, 0) + len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                continue
    return counts


def apply_rlimits(limits: dict[str, int], nproc_offset: bool) -> None:
    for key, value in limits.items():
        if key == "processes" and nproc_offset:
            value += _task_counts().get(os.getuid(), 0)
        kind = getattr(resource, RLIMITS[key])
        resource.setrlimit(kind, (value, value))  # soft = hard: the code cannot raise either


def run_payload(cfg: dict[str, Any]) -> None:
    """In the forked child: confine ourselves layer by layer, then exec the code. Never returns."""
    try:
        for sig in (signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if cfg.get("view"):
            bind_workdir(cfg["workdir"], cfg["view"])
        workdir_fd = os.open(cfg.get("view") or cfg["workdir"], os.O_PATH | os.O_DIRECTORY)
        ruleset = landlock_ruleset(cfg["landlock"]) if cfg.get("landlock") else -1
        if cfg.get("netns"):
            unshare_network(cfg["netns"])
        if cfg.get("uid") is not None:
            os.setgroups([])
            os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
            os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
        apply_rlimits(cfg["rlimits"], bool(cfg.get("nproc_offset")))
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a uid change clears it, so set it after
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        if ruleset >= 0:
            _check(_libc.syscall(NR_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
            os.close(ruleset)
        if cfg.get("seccomp"):
            seccomp_deny_network()
        os.fchdir(workdir_fd)
        os.closerange(3, 65536)
        argv = cfg["argv"]
        os.execve(argv[0], argv, cfg["env"])
    except BaseException as exc:
        os.write(2, f"edgecrew sandbox: could not start the code: {exc}\n".encode())
    os._exit(127)


def _children_of(root: int) -> list[int]:
    """Every live descendant of ``root``, from the ppid links in /proc."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants(deadline_s: float = 3.0) -> None:
    """SIGKILL every descendant and reap them; orphans come to us because we are a subreaper."""
    me, end = os.getpid(), time.monotonic() + deadline_s
    while time.monotonic() < end:
        for pid in _children_of(me):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return
        time.sleep(0.005)


def supervise(cfg: dict[str, Any]) -> int:
    status_fd = int(cfg["status_fd"])
    os.set_inheritable(status_fd, False)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)

    def stop(signum: int, frame: object) -> None:
        raise _Terminate

    signal.signal(signal.SIGTERM, stop)
    report: dict[str, Any] = {"started": time.time()}
    try:
        pid = os.fork()
        if pid == 0:
            run_payload(cfg)
        try:
            _, status, usage = os.wait4(pid, 0)
        except _Terminate:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            report["terminated"] = True
        else:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            report["cpu_s"] = usage.ru_utime + usage.ru_stime
            report["max_rss_kib"] = usage.ru_maxrss
            if os.WIFSIGNALED(status):
                report["signal"] = os.WTERMSIG(status)
            else:
                report["exit_code"] = os.waitstatus_to_exitcode(status)
    except _Terminate:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        report["terminated"] = True
    kill_descendants()
    with contextlib.suppress(OSError):
        os.write(status_fd, json.dumps(report).encode())
    return 0


def probe() -> dict[str, Any]:
    """What this kernel and this user allow, each tried in a throwaway child."""

    def attempt(action: Any) -> bool:
        pid = os.fork()
        if pid == 0:
            try:
                action()
                os._exit(0)
            except BaseException:
                os._exit(1)
        return os.waitpid(pid, 0)[1] == 0

    def seccomp_works() -> None:
        import socket

        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        seccomp_deny_network()
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except PermissionError:
            return
        raise RuntimeError("socket() still allowed")

    return {
        "landlock_abi": landlock_abi(),
        "netns_root": attempt(lambda: unshare_network("root")),
        "netns_userns": attempt(lambda: unshare_network("userns")),
        "seccomp": platform.machine() in SECCOMP_ARCHES and attempt(seccomp_works),
        "euid": os.geteuid(),
    }


def main(argv: list[str]) -> int:
    if argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
        return 0
    with open(argv[1], encoding="utf-8") as fh:
        cfg = json.load(fh)
    return supervise(cfg)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
