"""A small simulator of the kernel's memcg accounting that emits trace rows.

Test input only: it follows the kernel's rules as docs/accounting.md describes
them (per era), so a stream it generates is balanced by construction, and a
fault injected into it must be caught. Traces it writes say ``synthetic`` in
their metadata (and, when shipped, in their file name).

    python tests/synthetic.py OUT.parquet [--era 6.7+|5.18-6.6] [--seed N]
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from chargetrace.traces import Era, Scope, TraceMeta, TraceWriter

RAM_BASE = 0xFFFFEA0000100000
DEV_BASE = 0xFFFFEA0040000000
PAGE = 4096
STOCK = 64  # pages of per-CPU charge stock the simulated kernel keeps


@dataclass
class SimProcess:
    pid: int
    memcg: int
    ram: list[int] = field(default_factory=list)  # folios mapped in RAM
    dev: list[int] = field(default_factory=list)  # device-private folios mapped


class SyntheticKernel:
    """Emits the rows a recorder would for a process using a GPU through HMM."""

    def __init__(self, era: str = "6.7+", ncpus: int = 2, seed: int = 0) -> None:
        self.transfer = era == "6.7+"
        self.refcount = 1 if era == "4.14-5.17" else 0
        self.ncpus = ncpus
        self.rng = random.Random(seed)
        self.rows: list[dict] = []
        self.ts = 1_000_000
        self.free_ram: list[int] = []
        self.free_dev: list[int] = []
        self.next_ram = RAM_BASE
        self.next_dev = DEV_BASE
        self.live: dict[int, int] = {}
        self.procs: dict[int, SimProcess] = {}

    # -- plumbing ----------------------------------------------------------------
    def emit(self, kind: str, proc: SimProcess | None = None, **fields: object) -> None:
        self.ts += self.rng.randint(100, 5000)
        pid = proc.pid if proc else 0
        row = {"ts_ns": self.ts, "cpu": pid % self.ncpus, "pid": pid, "tid": pid,
               "comm": "hmm-sim" if proc else "", "kind": kind, "probe": "synthetic"}
        row.update(fields)
        self.rows.append(row)

    def _alloc(self, device: bool) -> int:
        pool = self.free_dev if device else self.free_ram
        if pool and self.rng.random() < 0.7:
            return pool.pop(self.rng.randrange(len(pool)))
        if device:
            self.next_dev += 64
            return self.next_dev
        self.next_ram += 64
        return self.next_ram

    def _charge(self, proc: SimProcess, folio: int) -> None:
        self.emit("charge", proc, folio=folio, nr_pages=1, memcg=proc.memcg, ret=0)
        self.emit("memcg_stat", proc, memcg=proc.memcg, item="PGPGIN", value=1)
        self.live[proc.memcg] = self.live.get(proc.memcg, 0) + 1

    def _uncharge(self, proc: SimProcess, folio: int, memcg: int) -> None:
        self.emit("uncharge", proc, folio=folio, nr_pages=1, memcg=memcg)
        if memcg:
            self.emit("memcg_stat", proc, memcg=memcg, item="PGPGOUT", value=1)
            self.live[memcg] -= 1

    def _transfer(self, proc: SimProcess, old: int, new: int) -> None:
        self.emit("transfer", proc, folio=old, folio_new=new, nr_pages=1, memcg=proc.memcg, memcg_new=proc.memcg)
        self._anon(proc, -1)  # src rmap removed at collect ...
        self._anon(proc, +1)  # ... dst rmap added by remove_migration_pte
        if not self.transfer:  # <= 6.6 force-charges new (v1 PGPGIN too); old keeps its charge
            self.emit("memcg_stat", proc, memcg=proc.memcg, item="PGPGIN", value=1)
            self.live[proc.memcg] += 1

    def _anon(self, proc: SimProcess, delta: int) -> None:
        self.emit("memcg_stat", proc, memcg=proc.memcg, item="NR_ANON_MAPPED", value=delta)

    def _free_ram(self, proc: SimProcess, folio: int, charged: bool) -> None:
        self._uncharge(proc, folio, proc.memcg if charged else 0)
        self.free_ram.append(folio)

    def _free_dev(self, proc: SimProcess, folio: int, charged: bool) -> None:
        memcg = proc.memcg if charged else 0
        self.emit("device_free", proc, folio=folio, nr_pages=1, memcg=memcg, value=self.refcount)
        self._uncharge(proc, folio, memcg)
        self.free_dev.append(folio)

    # -- operations ----------------------------------------------------------------
    def spawn(self, pid: int, memcg: int) -> SimProcess:
        proc = self.procs[pid] = SimProcess(pid, memcg)
        return proc

    def sample_usage(self, memcg: int) -> None:
        pages = self.live.get(memcg, 0) + self.rng.randint(0, STOCK)
        self.emit("usage", None, memcg=memcg, item="memory.current", value=pages * PAGE, probe="sample:memory.current")

    def fault_in(self, proc: SimProcess, n: int) -> None:
        for _ in range(n):
            folio = self._alloc(device=False)
            addr = 0x7F0000000000 + self.rng.randrange(1 << 20) * PAGE
            self.emit("fault", proc, addr=addr, value=6)
            self._charge(proc, folio)
            self._anon(proc, +1)
            proc.ram.append(folio)

    def migrate_to_device(self, proc: SimProcess, n: int, holes: int = 0) -> None:
        n = min(n, len(proc.ram))
        sources = [proc.ram.pop(self.rng.randrange(len(proc.ram))) for _ in range(n)]
        self.emit("migrate_setup", proc, item="migrate_vma_setup", nr_pages=n + holes, value=n + holes)
        moved = []
        for old in sources:
            new = self._alloc(device=True)
            self._transfer(proc, old, new)
            moved.append((old, new))
        for _ in range(holes):  # migrate_vma_insert_page: a fresh charge of a DP folio
            new = self._alloc(device=True)
            self._charge(proc, new)
            self._anon(proc, +1)
            proc.dev.append(new)
        self.emit("migrate_pages", proc, item="migrate_vma_pages", nr_pages=n + holes, value=n)
        self.emit("migrate_finalize", proc, item="migrate_vma_finalize", nr_pages=n + holes)
        for old, new in moved:
            self._free_ram(proc, old, charged=not self.transfer)
            proc.dev.append(new)

    def fault_back(self, proc: SimProcess) -> None:
        if not proc.dev:
            return
        old = proc.dev.pop(self.rng.randrange(len(proc.dev)))
        self.emit("device_fault", proc, folio=old, item="do_swap_page")
        self.emit("migrate_setup", proc, item="migrate_vma_setup", nr_pages=1, value=1)
        new = self._alloc(device=False)
        self._transfer(proc, old, new)
        self.emit("migrate_pages", proc, item="migrate_vma_pages", nr_pages=1, value=1)
        self.emit("migrate_finalize", proc, item="migrate_vma_finalize", nr_pages=1)
        self._free_dev(proc, old, charged=not self.transfer)
        self.emit("device_fault_done", proc, ret=0x400)  # VM_FAULT_LOCKED-free success code
        proc.ram.append(new)

    def unmap(self, proc: SimProcess, n: int) -> None:
        for _ in range(min(n, len(proc.ram))):
            self._anon(proc, -1)
            self._free_ram(proc, proc.ram.pop(self.rng.randrange(len(proc.ram))), charged=True)

    def fork(self, parent: SimProcess, child_pid: int) -> SimProcess:
        self.emit("fork", parent, value=child_pid)
        return self.spawn(child_pid, parent.memcg)

    def exit(self, proc: SimProcess) -> None:
        for folio in proc.ram:
            self._anon(proc, -1)
            self._free_ram(proc, folio, charged=True)
        for folio in proc.dev:
            self._anon(proc, -1)
            self._free_dev(proc, folio, charged=True)
        proc.ram.clear()
        proc.dev.clear()
        self.emit("exit", proc, value=1)

    def lost(self, count: int, span_ns: int = 5_000_000) -> None:
        self.emit("lost", None, value=count, span_ns=span_ns, probe="recorder")


def hmm_workload(era: str = "6.7+", seed: int = 0, memcg: int = 4242, scale: int = 1) -> SyntheticKernel:
    """A deterministic HMM-like run: fault in, migrate to the device and back, exit."""
    sim = SyntheticKernel(era, seed=seed)
    sim.sample_usage(memcg)
    proc = sim.spawn(1000, memcg)
    for _ in range(4 * scale):
        sim.fault_in(proc, 64)
        sim.migrate_to_device(proc, 48, holes=2)
        for _ in range(16):
            sim.fault_back(proc)
        sim.unmap(proc, 8)
    sim.exit(proc)
    sim.sample_usage(memcg)
    return sim


def synthetic_meta(era: str, memcg: int, ncpus: int = 2) -> TraceMeta:
    migrate = "transfer" if era == "6.7+" else "force"
    return TraceMeta(
        recorder="chargetrace synthetic generator (tests/synthetic.py)",
        synthetic=True,
        kernel_release=f"synthetic ({era} era)",
        host="synthetic",
        era=Era(migrate, 1 if era == "4.14-5.17" else 0, f"synthetic: {era} era"),
        scope=Scope(kind="command", command=["hmm-sim"], memcg=memcg, fresh=True, exited=True, settled="synthetic"),
        ncpus=ncpus,
        provenance={"generator": "tests/synthetic.py hmm_workload", "synthetic": True},
    )


def write_rows(rows: list[dict], path: Path, meta: TraceMeta) -> Path:
    # Simulated pointers reveal nothing: keep them so tests can name folios.
    with TraceWriter(path, meta, raw_pointers=True) as writer:
        writer.append_rows(rows)
    return path


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--era", default="6.7+", choices=["6.7+", "5.18-6.6", "4.14-5.17"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args(argv)
    sim = hmm_workload(args.era, args.seed, scale=args.scale)
    write_rows(sim.rows, args.out, synthetic_meta(args.era, 4242))
    print(f"{args.out}: {len(sim.rows)} synthetic events ({args.era} era)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
