"""The attack corpus the sandbox tests run: each attack is code plus a check that it was contained.

Code is a template: ``@SECRET@``, ``@OUTSIDE@``, ``@PORT@``... are filled in from the test's ``Ctx``.
A check asserts (or returns False) on the ``SandboxResult`` and on what the test can see from outside:
a file that must not exist, a listener that must have no connection, a secret that must not be printed.
Every process an attack leaves behind is named ``@NAME@`` (PR_SET_NAME) so the test can look for it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from edgecrew.tools.sandbox import SandboxLimits, SandboxResult, SandboxTier
from tests.conftest import REPO

KiB, MiB = 1024, 1024 * 1024
FAST = SandboxLimits(
    cpu_s=2,
    wall_s=2.5,
    memory_bytes=256 * MiB,
    processes=32,
    file_bytes=4 * MiB,
    open_files=64,
    output_bytes=8 * KiB,
    disk_bytes=32 * MiB,
    new_files=2000,
)


@dataclass
class Ctx:
    workdir: Path
    secret: Path
    secret_value: str
    outside: Path
    host_tmp: Path
    canary: str
    name: str  # process name (comm) every process an attack leaves running carries
    tcp: socket.socket
    udp: socket.socket
    abstract: socket.socket
    sentinel: subprocess.Popen[bytes]

    def render(self, code: str) -> str:
        values = {
            "@SECRET@": str(self.secret),
            "@OUTSIDE@": str(self.outside),
            "@HOSTTMP@": str(self.host_tmp),
            "@NAME@": self.name,
            "@PORT@": str(self.tcp.getsockname()[1]),
            "@UDP@": str(self.udp.getsockname()[1]),
            "@ABSTRACT@": self.abstract.getsockname()[1:].decode(),
            "@TESTPID@": str(os.getpid()),
            "@SENTINEL@": str(self.sentinel.pid),
            "@REPO@": str(REPO),
        }
        for key, value in values.items():
            code = code.replace(key, value)
        return code


Check = Callable[[SandboxResult, Ctx], bool | None]  # asserts, or returns False on failure
NEEDS = {
    "fs": {"bwrap", "landlock-fs"},
    "net": {"bwrap", "netns", "netns-userns", "seccomp-net"},
    "tcp": {"bwrap", "netns", "netns-userns", "seccomp-net", "landlock-net"},
    "abstract": {"bwrap", "netns", "netns-userns", "landlock-scope"},
    "proc": {"bwrap", "landlock-fs", "uid-drop"},
    "signals": {"bwrap", "landlock-scope", "uid-drop"},
    # root's powers (setuid, mount, raw devices) are gone when edgecrew is not root, or the code runs as another uid
    "unprivileged": {"bwrap", "uid-drop", *(["rlimits"] if os.geteuid() != 0 else [])},
}


@dataclass
class Attack:
    id: str
    kind: Literal["python", "shell"]
    code: str
    check: Check
    needs: str | None = None  # a key of NEEDS: the layers that contain this attack
    fallback: bool = False  # also run it in every fallback tier that has those layers
    limits: SandboxLimits = field(default_factory=lambda: FAST)


def out(r: SandboxResult) -> str:
    return r.stdout + r.stderr


def not_in_output(*needles: Callable[[Ctx], str]) -> Check:
    def check(r: SandboxResult, c: Ctx) -> None:
        for needle in needles:
            assert needle(c) not in out(r)

    return check


def all_of(*checks: Check) -> Check:
    def check(r: SandboxResult, c: Ctx) -> None:
        for each in checks:
            assert each(r, c) is not False, f"not contained: {r}"

    return check


def no_secret(r: SandboxResult, c: Ctx) -> None:
    assert "TOPSECRET" not in out(r)


def nothing_outside(r: SandboxResult, c: Ctx) -> None:
    assert list(c.outside.iterdir()) == []
    assert not c.host_tmp.exists()


def timed_out(r: SandboxResult, c: Ctx) -> None:
    assert r.timed_out and r.killed_reason == "wall" and r.exit_code == -signal.SIGKILL, r


def fork_bomb_stopped(r: SandboxResult, c: Ctx) -> None:
    """A fork bomb is contained either way: killed at the wall-clock limit, or its script ended early
    because the sandbox's process limit refused its forks (on a busy machine the bomb reaches the limit
    before the script's last command can start)."""
    if r.timed_out:
        timed_out(r, c)
        return
    refused = "Cannot fork" in r.stderr or "Resource temporarily unavailable" in r.stderr
    assert refused and r.exit_code != 0, r


def finished(r: SandboxResult, c: Ctx) -> None:
    assert not r.timed_out and r.duration_s < 2.0, r


def failed(r: SandboxResult, c: Ctx) -> None:
    assert r.exit_code != 0, r


def count_below(word: str, limit: int) -> Check:
    def check(r: SandboxResult, c: Ctx) -> None:
        line = next(line for line in r.stdout.splitlines() if line.startswith(word))
        assert int(line.split()[1]) < limit, line

    return check


def stderr_has(text: str) -> Check:
    def check(r: SandboxResult, c: Ctx) -> None:
        assert text in r.stderr, r

    return check


def killed_for(reason: str) -> Check:
    def check(r: SandboxResult, c: Ctx) -> None:
        assert r.killed_reason == reason, r

    return check


def no_connection(r: SandboxResult, c: Ctx) -> None:
    assert "CONNECTED" not in r.stdout, r
    for sock in (c.tcp, c.abstract):
        with pytest.raises(BlockingIOError):
            sock.accept()
    with pytest.raises(BlockingIOError):
        c.udp.recvfrom(100)


def file_at_most(name: str, size: int) -> Check:
    def check(r: SandboxResult, c: Ctx) -> None:
        assert (c.workdir / name).stat().st_size <= size

    return check


def sentinel_alive(r: SandboxResult, c: Ctx) -> None:
    assert c.sentinel.poll() is None
    assert r.exit_code == 0 and "done" in r.stdout, r  # the supervisor survived and reported


def own_environ_entry() -> str:
    """An entry of this process's /proc environ that the sandbox never sets (the canary is set too late)."""
    entries = Path("/proc/self/environ").read_bytes().decode(errors="replace").split("\0")
    plain = [e for e in entries if re.fullmatch(r"[A-Z_]+=[\w/.:-]{4,}", e) and e.split("=")[0] not in SANDBOX_ENV]
    return max(plain, key=len, default="\0none")


SANDBOX_ENV = {"PATH", "LANG", "HOME", "TMPDIR", "PWD", "SHLVL", "_"}


def shadow_line() -> str:
    try:
        return Path("/etc/shadow").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "\0unreadable"


def root_listing(r: SandboxResult, c: Ctx) -> None:
    # bwrap shows /root only as the path to a Python that lives under it, never its real content.
    real = set(os.listdir("/root")) if os.access("/root", os.R_OK) else set()
    python_root = {p.split("/")[2] for p in (os.path.realpath(sys.executable),) if p.startswith("/root/")}
    shown = {name for name in real if f"'{name}'" in r.stdout}
    assert shown <= python_root, shown


def py(code: str) -> str:
    return textwrap.dedent(code).strip() + "\n"


NAME = 'import ctypes\nctypes.CDLL(None).prctl(15, b"@NAME@", 0, 0, 0)  # PR_SET_NAME: the leftover marker\n'
CPU = SandboxLimits(cpu_s=1, wall_s=4, memory_bytes=256 * MiB, processes=32)
WALL = dataclasses.replace(FAST, wall_s=1.5)
FILES = dataclasses.replace(FAST, wall_s=5, new_files=300)  # file creation is slow on a loaded machine
TRY_CONNECT = """
    import socket
    try:
        {connect}
        print("CONNECTED")
    except OSError as e:
        print("blocked", e)
"""

ATTACKS = [
    # -- processes
    Attack(
        "fork-loop-counted",
        "python",
        NAME
        + py("""
            import os, time
            n = 0
            try:
                while n < 10000:
                    if os.fork() == 0:
                        time.sleep(60)
                        os._exit(0)
                    n += 1
            except OSError:
                print("forked", n)
        """),
        all_of(count_below("forked", FAST.processes), finished),
        fallback=True,
    ),
    Attack(
        "fork-bomb-python",
        "python",
        NAME
        + py("""
            import os
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """),
        timed_out,
        limits=WALL,
        fallback=True,
    ),
    Attack(
        "fork-bomb-shell",
        "shell",
        "cp /bin/bash ./@NAME@\n./@NAME@ -c ':(){ :|:& };:'\nsleep 30",
        fork_bomb_stopped,
        limits=WALL,
    ),
    Attack(
        "zombies",
        "python",
        NAME
        + py("""
            import os
            n = 0
            try:
                while n < 10000:
                    if os.fork() == 0:
                        os._exit(0)
                    n += 1  # never waited for: each child stays a zombie
            except OSError:
                print("forked", n)
        """),
        count_below("forked", FAST.processes),
    ),
    Attack(
        "thread-bomb",
        "python",
        py("""
            import threading, time
            n = 0
            try:
                while n < 10000:
                    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
                    n += 1
            except (RuntimeError, MemoryError):
                print("threads", n)
        """),
        count_below("threads", FAST.processes),
    ),
    Attack(
        "double-fork-daemon",
        "python",
        py("""
            import ctypes, os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    ctypes.CDLL(None).prctl(15, b"@NAME@", 0, 0, 0)
                    time.sleep(60)
                os._exit(0)
            print("parent done")
        """),
        all_of(finished, lambda r, c: r.stdout == "parent done\n"),
        fallback=True,
    ),
    Attack(
        "setsid-escape-then-hang",
        "python",
        py("""
            import ctypes, os, time
            if os.fork() == 0:
                os.setsid()  # out of the process group the wall clock would kill
                ctypes.CDLL(None).prctl(15, b"@NAME@", 0, 0, 0)
                time.sleep(60)
            time.sleep(60)
        """),
        timed_out,
        limits=WALL,
        fallback=True,
    ),
    Attack(
        "shell-setsid-daemon",
        "shell",
        py("""
            cp /bin/sleep ./@NAME@
            setsid ./@NAME@ 60 </dev/null >/dev/null 2>&1 &
            nohup ./@NAME@ 61 >/dev/null 2>&1 &
            echo bg
        """),
        finished,
    ),
    Attack(
        "sigterm-ignored",
        "python",
        py("""
            import signal, time
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            while True:
                time.sleep(0.1)
        """),
        timed_out,
        limits=WALL,
    ),
    Attack(
        "shell-trap", "shell", "trap '' TERM INT HUP\nwhile :; do sleep 1; done", timed_out, limits=WALL, fallback=True
    ),
    Attack(
        "kill-parent-and-everyone",
        "python",
        py("""
            import os, signal
            for pid in (os.getppid(), -1, 1, @TESTPID@, @SENTINEL@):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            print("done")
        """),
        sentinel_alive,
        needs="signals",
        fallback=True,
    ),
    Attack(
        "shell-kill-all",
        "shell",
        "kill -9 -1 $PPID @TESTPID@ @SENTINEL@ 2>/dev/null\necho done",
        sentinel_alive,
        "signals",
    ),
    # -- cpu, memory, time
    Attack("cpu-loop", "python", "while True:\n    pass", killed_for("cpu"), limits=CPU, fallback=True),
    Attack(
        "cpu-loop-sigxcpu-ignored",
        "python",
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass",
        killed_for("cpu"),
        limits=CPU,
    ),
    Attack("sleep-forever", "python", "import time\ntime.sleep(10**6)", timed_out, limits=WALL, fallback=True),
    Attack("shell-sleep-forever", "shell", "sleep 100000", timed_out, limits=WALL),
    Attack(
        "memory-bomb", "python", "x = bytearray(2 * 1024**3)", all_of(failed, stderr_has("MemoryError")), fallback=True
    ),
    Attack(
        "memory-growth",
        "python",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))",
        all_of(failed, stderr_has("MemoryError")),
    ),
    Attack("urandom-into-memory", "python", "data = open('/dev/urandom', 'rb').read()", failed),
    Attack("shell-urandom-into-memory", "shell", 'x="$(head -c 2000000000 /dev/urandom)"\necho "${#x}"', failed),
    Attack(
        "recursion-bomb",
        "python",
        py("""
            import sys
            sys.setrecursionlimit(10**9)
            def f(n):
                return f(n + 1)
            f(0)
        """),
        all_of(failed, lambda r, c: not any("core" in f for f in r.files_produced)),
    ),
    Attack(
        "raise-rlimits",
        "python",
        py("""
            import resource
            for name in ("RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE"):
                try:
                    resource.setrlimit(getattr(resource, name), (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                    print(name, "RAISED")
                except (ValueError, OSError):
                    print(name, "kept")
            print("nproc", *resource.getrlimit(resource.RLIMIT_NPROC))
        """),
        lambda r, c: "RAISED" not in r.stdout and "nproc 32 32" in r.stdout,
        fallback=True,
    ),
    Attack(
        "shell-raise-ulimit",
        "shell",
        "bash -c 'ulimit -u unlimited && echo RAISED; ulimit -n 100000 && echo RAISED; echo procs $(ulimit -u)'",
        lambda r, c: "RAISED" not in r.stdout and "procs 32" in r.stdout,
    ),
    # -- output, files, disk
    Attack(
        "huge-stdout",
        "python",
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        all_of(killed_for("output"), lambda r, c: r.truncated and len(r.stdout) < FAST.output_bytes + 200),
        fallback=True,
    ),
    Attack(
        "huge-stderr",
        "python",
        "import sys\nwhile True:\n    sys.stderr.write('x' * 65536)",
        all_of(killed_for("output"), lambda r, c: r.truncated and len(r.stderr) < FAST.output_bytes + 200),
    ),
    Attack(
        "shell-yes", "shell", "yes", all_of(killed_for("output"), lambda r, c: len(r.stdout) < FAST.output_bytes + 200)
    ),
    Attack(
        "huge-file",
        "python",
        py("""
            f = open("big", "wb", buffering=0)
            try:
                while True:
                    f.write(b"x" * (1 << 20))
            except OSError as e:
                print("stopped", e.errno)
        """),
        all_of(file_at_most("big", FAST.file_bytes), lambda r, c: "stopped 27" in r.stdout),  # EFBIG
        fallback=True,
    ),
    Attack("shell-huge-file", "shell", "head -c 100000000 /dev/zero > big", file_at_most("big", FAST.file_bytes)),
    Attack(
        "too-many-open-files",
        "python",
        py("""
            files = []
            try:
                while True:
                    files.append(open("/dev/null"))
            except OSError:
                print("opened", len(files))
        """),
        count_below("opened", FAST.open_files),
    ),
    Attack(
        "many-small-files",
        "python",
        "i = 0\nwhile True:\n    open(f'f{i}', 'w').close()\n    i += 1",
        all_of(killed_for("files"), lambda r, c: len(os.listdir(c.workdir)) < 50 * FILES.new_files),
        limits=FILES,
    ),
    Attack(
        "disk-fill",
        "python",
        "i = 0\nwhile True:\n    open(f'd{i}', 'wb').write(b'x' * (1 << 20))\n    i += 1",
        all_of(
            killed_for("disk"), lambda r, c: sum(p.stat().st_size for p in c.workdir.iterdir()) < 20 * FAST.disk_bytes
        ),
    ),
    Attack(
        "tmp-fill",
        "python",
        py("""
            import os
            for i in range(10**6):
                open(f"{os.environ['TMPDIR']}/t{i}", "wb").write(b"x" * (1 << 20))
        """),
        killed_for("disk"),
    ),
    # -- network
    Attack(
        "tcp-connect-localhost",
        "python",
        py(TRY_CONNECT.format(connect="socket.create_connection(('127.0.0.1', @PORT@), timeout=1).sendall(b'pwned')")),
        no_connection,
        "tcp",
        fallback=True,
    ),
    Attack(
        "shell-tcp-connect-localhost",
        "shell",
        "bash -c 'echo pwned > /dev/tcp/127.0.0.1/@PORT@' && echo CONNECTED",
        no_connection,
        "tcp",
        fallback=True,
    ),
    Attack(
        "udp-send-localhost",
        "python",
        # sendto succeeds inside a network namespace (its own loopback): the listener is what must stay empty
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'pwned', ('127.0.0.1', @UDP@))",
        no_connection,
        "net",
        fallback=True,
    ),
    Attack(
        "abstract-unix-socket",
        "python",
        py(TRY_CONNECT.format(connect="socket.socket(socket.AF_UNIX).connect('\\0@ABSTRACT@')")),
        no_connection,
        "abstract",
        fallback=True,
    ),
    Attack(
        "dns-lookup",
        "python",
        py(TRY_CONNECT.format(connect="print('RESOLVED', socket.getaddrinfo('example.com', 80))")),
        lambda r, c: "RESOLVED" not in r.stdout,
        "net",
        fallback=True,
    ),
    # -- filesystem
    Attack("read-secret-sibling", "python", "print(open('@SECRET@').read())", all_of(no_secret, failed), "fs", True),
    Attack("shell-read-secret", "shell", "cat @SECRET@; cat ../secret/key.txt", no_secret, "fs", True),
    Attack("read-etc-shadow", "shell", "cat /etc/shadow", not_in_output(lambda c: shadow_line()), "fs", True),
    Attack("list-root-home", "python", "import os\nprint(sorted(os.listdir('/root')))", root_listing, "fs"),
    Attack(
        "read-project-source", "shell", "cat @REPO@/pyproject.toml", not_in_output(lambda c: 'name = "edgecrew"'), "fs"
    ),
    Attack(
        "write-outside",
        "python",
        "open('@OUTSIDE@/pwned', 'w').write('x')",
        all_of(failed, nothing_outside),
        "fs",
        True,
    ),
    Attack("write-host-tmp", "shell", "echo x > @HOSTTMP@", nothing_outside, "fs", True),
    Attack("symlink-escape-write", "python", "open('link/pwned', 'w').write('x')", nothing_outside, "fs", True),
    Attack(
        "symlink-escape-read",
        "python",
        "import os\nos.symlink('@SECRET@', 'leak')\nprint(open('leak').read())",
        no_secret,
        "fs",
        True,
    ),
    Attack(
        "dotdot-escape",
        "python",
        py("""
            try:
                print(open("../secret/key.txt").read())
            except OSError as e:
                print("blocked", e)
            open("../outside/pwned2", "w").write("x")
        """),
        all_of(no_secret, nothing_outside),
        "fs",
        True,
    ),
    Attack(
        "hardlink-secret",
        "python",
        "import os\nos.link('@SECRET@', 'hl')\nprint(open('hl').read())",
        all_of(no_secret, lambda r, c: not (c.workdir / "hl").exists()),
        "fs",
    ),
    Attack(
        "ctypes-system",
        "python",
        "import ctypes\nctypes.CDLL(None).system(b'cat @SECRET@; echo x > @OUTSIDE@/pwned3')",
        all_of(no_secret, nothing_outside),
        "fs",
        True,
    ),
    Attack(
        "ctypes-ptrace",
        "python",
        py("""
            import ctypes, os
            libc = ctypes.CDLL(None)
            libc.ptrace.restype = ctypes.c_long
            print("ptrace", *[libc.ptrace(16, pid, 0, 0) for pid in (os.getppid(), @TESTPID@, 1)])  # PTRACE_ATTACH
        """),
        lambda r, c: "ptrace -1 -1 -1" in r.stdout,
        "signals",
    ),
    Attack(
        "become-root",
        "python",
        py("""
            import ctypes, os
            try:
                os.setuid(0)
                print("ROOT")
            except OSError as e:
                print("blocked", e)
            print("mount", ctypes.CDLL(None).mount(b"none", b"/tmp", b"tmpfs", 0, None))
        """),
        lambda r, c: "ROOT" not in r.stdout and "mount -1" in r.stdout,
        "unprivileged",
    ),
    Attack(
        "raw-devices",
        "python",
        py("""
            for dev in ("/dev/mem", "/dev/kmsg", "/dev/vda", "/dev/sda", "/dev/nvme0n1"):
                try:
                    open(dev, "rb").read(16)
                    print("READ", dev)
                except OSError:
                    pass
        """),
        lambda r, c: "READ" not in r.stdout,
        "unprivileged",
    ),
    Attack("import-edgecrew", "python", "import edgecrew", stderr_has("ModuleNotFoundError")),
    # -- environment and /proc
    Attack(
        "env-secrets",
        "python",
        "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())",
        not_in_output(lambda c: c.canary),
        fallback=True,
    ),
    Attack("shell-env-secrets", "shell", "env; cat /proc/$PPID/environ", not_in_output(lambda c: c.canary)),
    Attack(
        "proc-snoop",
        "python",
        py("""
            import os
            for pid in [@TESTPID@, os.getppid(), *os.listdir("/proc")]:
                for what in ("environ", "cmdline"):
                    try:
                        print(open(f"/proc/{pid}/{what}", "rb").read())
                    except (OSError, ValueError):
                        pass
        """),
        not_in_output(lambda c: c.canary, lambda c: own_environ_entry()),
        "proc",
        fallback=True,
    ),
]


def contained_in(tier: SandboxTier, attack: Attack) -> bool:
    return attack.needs is None or bool(NEEDS[attack.needs] & set(tier.isolation))
