"""The corpus's v2 half in the lab guest (Debian's 6.1 under QEMU: cgroup v2, kprobes, swap).

    python -m tests.corpus.lab [CASE ...] [--out DIR] [--kernel 6.1]
    python -m tests.corpus.lab --judge DIR [CASE ...]     # judge the run made with --out DIR again

One boot records every case (:mod:`.guest` in the guest, with a statically
built ``mem`` and the corpus package shipped through ``--workload-file``); the
host replays each trace and compares it with the case table through the
harness's own :func:`~.harness.judge` and :func:`~.harness.check`: the same
expectations as on the host, with v1-only rules (PGPGIN) and v1-only cases left
out by the table itself (``RULE_NEEDS``, ``Case.only``). The guest gets two
scratch disks: ext4 for the page-cache cases (its root is 9p, which keeps no
page cache) and a swap device the swap case turns on.

Limits: root on a Debian host with the 6.1 lab built or cached
(``chargetrace lab build --kernel 6.1``) and gcc; under TCG each case costs
one BCC compile of the recorder (~0.5-2 min) on top of its workload.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .cases import CASES, Case
from .harness import HERE, Outcome, Recorded, build_mem, judge

__all__ = ["GUEST_CASES", "LabCorpus", "judge_run", "run_in_lab", "main"]

#: The guest's Python: the venv chargetrace is installed in (lab/rootfs.py VENV).
GUEST_PYTHON = "/opt/chargetrace/bin/python"
#: Cases of the table that run on cgroup v2, in table order.
GUEST_CASES = tuple(c.name for c in CASES if 2 in c.only)
_DISKS_MB = (1024, 512)  # /dev/vda: ext4 for the disk cases; /dev/vdb: swap


@dataclass
class LabCorpus:
    """One lab run of the corpus: per case an outcome, or why it did not run."""

    run_dir: Path
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    #: a need the guest could not meet (harness.Unavailable): a skip
    not_run: dict[str, str] = field(default_factory=dict)
    #: never reached, or the recording broke (timeout, OSError): a failure
    broken: dict[str, str] = field(default_factory=dict)
    lab_problems: list[str] = field(default_factory=list)


def _pack(dest: Path) -> Path:
    """The corpus package (tables, harness, guest driver, shell workloads) as one tar."""
    tar = dest / "corpus.tar"
    with tarfile.open(tar, "w") as t:
        for f in sorted([*HERE.glob("*.py"), *(HERE / "workloads").glob("*.sh")]):
            t.add(f, arcname=f"corpus/{f.relative_to(HERE)}")
    return tar


def judge_run(run_dir: Path, names: tuple[str, ...] | list[str]) -> LabCorpus:
    """Judge every case the guest left in ``run_dir/out/corpus`` (host side)."""
    res = LabCorpus(run_dir)
    results = run_dir / "out" / "corpus"
    by_name = {c.name: c for c in CASES}
    for name in names:
        c: Case = by_name[name]
        row_path = results / f"{name}.json"
        if not row_path.exists():
            res.broken[name] = "the guest did not get to it"
            continue
        row = json.loads(row_path.read_text())
        if "unavailable" in row:
            res.not_run[name] = row["unavailable"]
            continue
        if "record_rc" not in row:
            res.broken[name] = row.get("error") or "?"
            continue
        rec = Recorded(**row)
        res.outcomes[name] = judge(c, rec, trace=results / Path(rec.trace).name)
    return res


def run_in_lab(names: tuple[str, ...] | list[str] = GUEST_CASES, *, out_dir: Path, kernel: str = "6.1",
               cache_dir: Path | None = None) -> LabCorpus:
    """Boot the lab once, record ``names`` in it, judge each on the host."""
    from chargetrace.lab import LabConfig, run_lab

    unknown = set(names) - set(GUEST_CASES)
    if unknown:
        raise KeyError(f"not v2 corpus cases: {', '.join(sorted(unknown))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    mem = out_dir / "mem"
    build_mem(mem)
    tar = _pack(out_dir)
    cmd = (f"tar -xf corpus.tar && {GUEST_PYTHON} -m corpus.guest --out /lab/out/corpus --mem ./mem "
           f"--disk /dev/vda --swap /dev/vdb -- {' '.join(shlex.quote(n) for n in names)}")
    kw = {"cache_dir": cache_dir} if cache_dir is not None else {}
    # Boot, kheaders and the probe trials (~5 min) plus per case a compile and the workload.
    cfg = LabConfig(kernel=kernel, out_dir=out_dir / "run", record=False, workload=cmd,
                    workload_files=(mem, tar), scratch_disks_mb=_DISKS_MB,
                    timeout_s=600 + 300 * len(names), **kw)
    lab = run_lab(cfg)
    res = judge_run(cfg.run_dir, names)
    res.lab_problems = list(lab.problems)
    return res


def main() -> int:
    from .table import print_table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help=f"case names (default: every v2 case: {', '.join(GUEST_CASES)})")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a fresh temporary one)")
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--judge", type=Path, default=None, metavar="DIR",
                    help="judge the traces of a run made with --out DIR again")
    args = ap.parse_args()
    names = args.cases or list(GUEST_CASES)
    unknown = set(names) - set(GUEST_CASES)
    if unknown:
        print(f"not v2 corpus case(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.judge is not None:
        res = judge_run(args.judge / "run", names)
    else:
        res = run_in_lab(names, out_dir=args.out or Path(tempfile.mkdtemp(prefix="chargetrace-labcorpus-")),
                         kernel=args.kernel)
    for p in res.lab_problems:
        print(f"lab: {p}", file=sys.stderr)
    for name, why in res.broken.items():
        print(f"{name}: not recorded: {why}", file=sys.stderr)
    rc = print_table([res.outcomes.get(n) or res.not_run.get(n) or res.broken[n] for n in names], names)
    return 1 if res.broken or res.lab_problems else rc


if __name__ == "__main__":
    sys.exit(main())
