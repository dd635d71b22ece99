"""Starting the recorded command inside the scope memcg, and its status.

The command starts stopped on a FIFO, is moved into the scope memcg and the
BPF thread-group set, then let go to exec: the scope sees it from its exec.
It dies with the recorder (PR_SET_PDEATHSIG), so a recorder killed with
SIGKILL does not leave it running unobserved in a cgroup nobody removes.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

from chargetrace.traces import ChargetraceError

from .cgroups import Memcg

__all__ = ["spawn_in", "shell_status"]


def shell_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it: 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def spawn_in(command: list[str], memcg: Memcg, add_tgid: Callable[[int], None]) -> subprocess.Popen[bytes]:
    """Run ``command`` in ``memcg``, its pid in the scope before it execs.

    A FIFO rather than an inherited pipe holds it: dash cannot redirect fds
    >= 10 and the recorder holds many BPF fds; nothing leaks into the
    command. The trampoline shell does almost nothing after the move."""
    tmpdir = tempfile.mkdtemp(prefix="chargetrace-")
    fifo = os.path.join(tmpdir, "go")
    os.mkfifo(fifo, 0o600)
    trampoline = 'f=$1; shift; read _ < "$f" || exit 125; exec "$@"'
    try:
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", trampoline, "sh", fifo, *command],
                                    preexec_fn=_die_with_parent)
        except OSError as exc:
            raise ChargetraceError(f"{command[0]}: cannot start ({exc.strerror})") from None
        add_tgid(proc.pid)
        memcg.add_pid(proc.pid)
        # Opening for write succeeds once the shell has opened for read.
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                if proc.poll() is not None:
                    return proc
                time.sleep(0.001)
        os.write(fd, b"\n")
        os.close(fd)
        return proc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
