"""The corpus's driver inside the lab guest (cgroup v2, kprobes): record many cases in one boot.

    python -m corpus.guest --out DIR --mem PATH --disk DEV --swap DEV [--timeout-scale X] CASE...

Runs in the guest from the unpacked corpus package (``tests/corpus/lab.py`` ships it
with a statically built ``mem``). Makes an ext4 file system on ``--disk`` for the
disk cases (the guest's root is 9p, which keeps no page cache), a swap area on
``--swap`` that the swap case alone turns on, and records each case with
:meth:`Corpus.record` to ``DIR/<case>.parquet``; ``DIR/<case>.json`` says how the
recording went (:class:`Recorded`, or why the case could not run). Nothing is
replayed here: the host judges every trace with the same harness
(:func:`harness.judge`). Limits: one recording at a time; a case that times out
is written as an error and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .cases import case
from .harness import Corpus, Unavailable

__all__ = ["main"]

DISK_MOUNT = Path("/mnt/corpus-disk")


def _uptime() -> str:
    return Path("/proc/uptime").read_text().split()[0]


def _prepare(disk: str, swap: str) -> None:
    # The lab's init mounts devtmpfs on /dev but no tmpfs on /dev/shm, where the harness
    # makes its tmpfs folders.
    shm = Path("/dev/shm")
    shm.mkdir(exist_ok=True)
    if not any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in Path("/proc/mounts").read_text().splitlines()):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(shm)], check=True, capture_output=True)
    DISK_MOUNT.mkdir(parents=True, exist_ok=True)
    for argv in (["mkfs.ext4", "-q", "-F", disk], ["mount", "-t", "ext4", disk, str(DISK_MOUNT)],
                 ["mkswap", "-f", swap]):
        subprocess.run(argv, check=True, capture_output=True)
    # The outside cgroup of "move-out" must be a memcg: on v2 that needs +memory in the
    # root's subtree_control before it is made (the recorder enables it for its own scope only
    # once it runs).
    ctl = Path("/sys/fs/cgroup/cgroup.subtree_control")
    if ctl.exists() and "memory" not in ctl.read_text().split():
        ctl.write_text("+memory")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mem", type=Path, required=True)
    ap.add_argument("--disk", required=True)
    ap.add_argument("--swap", required=True)
    ap.add_argument("--timeout-scale", type=float, default=3.0)
    ap.add_argument("cases", nargs="+")
    args = ap.parse_args(argv)
    cases = [case(n) for n in args.cases]  # unknown name: KeyError before anything is set up
    args.out.mkdir(parents=True, exist_ok=True)
    _prepare(args.disk, args.swap)
    work = Path("/tmp/corpus-work")
    work.mkdir(exist_ok=True)
    corpus = Corpus(work, mem=args.mem.resolve(), disk_root=DISK_MOUNT, swap_device=args.swap,
                    timeout_scale=args.timeout_scale)
    for c in cases:
        print(f"{_uptime()} {c.name}: recording", flush=True)
        t0 = time.monotonic()
        try:
            row = asdict(corpus.record(c, args.out / f"{c.name}.parquet"))
        except Unavailable as exc:
            row = {"case": c.name, "unavailable": str(exc)}
        except (subprocess.SubprocessError, OSError) as exc:
            row = {"case": c.name, "error": f"{type(exc).__name__}: {exc}"}
        (args.out / f"{c.name}.json").write_text(json.dumps(row, indent=1) + "\n")
        print(f"{_uptime()} {c.name}: {row.get('record_rc', row.get('unavailable') or row.get('error'))} "
              f"in {time.monotonic() - t0:.0f} s", flush=True)
    (args.out / "done").write_text(_uptime() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
