"""Why does bpf_ringbuf_reserve() fail with room to spare? (run as root)

A standalone BCC program on the recorder's busiest tracepoints
(exceptions:page_fault_user, memcg:mod_memcg_lruvec_state,
memcg:count_memcg_events), system-wide, while tests/live/workload.c faults.
Each probe reserves one 104-byte record (the recorder's size). On a failed
reservation it logs, *from inside the kernel at that moment*:

* the ring's consumer, producer and pending positions and its lock word,
  read from ``struct bpf_ringbuf`` (offsets from BTF; its address recovered
  from an earlier record's header: ``pg_off`` is the record's page offset
  from the struct, kernel/bpf/ringbuf.c ``bpf_ringbuf_restore_from_rec``);
* how long the failed call took;
* whether an immediate second reservation succeeds.

The consumer is the recorder's own (tracer/ringbuf.py, every 10 ms). With
``--consumer both`` each run is done twice, interleaved: once publishing the
consumer position as the recorder does now (one 8-byte store), once as it
did before (``struct.pack_into``, which zero-fills the field and then writes
it byte by byte, so for a moment the kernel reads a consumer position of 0
and a ring that has wrapped once looks full). Prints one line per logged
failure and a summary per consumer: how many failures happened with the
ring more than half full (capacity) and how many with it < 1 % full.

    python bench/ringbuf_failures.py [--pages 65536] [--rounds 4] [--runs 3] [--ringbuf-mb 32]
        [--consumer both|store8|pack_into]
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from chargetrace.tracer.config import setup_kernel
from chargetrace.tracer.ringbuf import RingReader, take_records

ROOT = Path(__file__).resolve().parents[1]
LOG = 256
SOURCE = r"""
#include <uapi/linux/ptrace.h>
struct rec { u64 w[13]; };
struct fail { u64 ts, took, cons, prod, pend, lock, cpu, again; };
BPF_RINGBUF_OUTPUT(events, PAGES);
BPF_ARRAY(counts, u64, 2);       /* 0 = failed reservations, 1 = records written */
BPF_ARRAY(rbaddr, u64, 2);       /* 0 = struct bpf_ringbuf *, 1 = scratch */
BPF_ARRAY(fails, struct fail, LOG);

static inline __attribute__((always_inline)) void put(void)
{
    int z = 0, one = 1;
    u64 t0 = bpf_ktime_get_ns();
    struct rec *r = events.ringbuf_reserve(sizeof(struct rec));
    u64 took = bpf_ktime_get_ns() - t0;
    u64 *ra = rbaddr.lookup(&z), *tmp = rbaddr.lookup(&one);
    if (r) {
        if (ra && tmp && !*ra) {
            /* Pointer -> integer through a map slot (root only); the
             * header's pg_off locates the ring struct. */
            u32 pg_off = 0;
            bpf_probe_read_kernel(&pg_off, 4, (char *)r - 4);
            *tmp = (u64)r;
            u64 hdr = (*(volatile u64 *)tmp - 8) & ~4095ULL;
            *ra = hdr - (u64)pg_off * 4096;
        }
        r->w[0] = t0;
        events.ringbuf_submit(r, BPF_RB_NO_WAKEUP);
        u64 *ok = counts.lookup(&one);
        if (ok) __sync_fetch_and_add(ok, 1);
        return;
    }
    u64 *n = counts.lookup(&z);
    if (!n) return;
    u64 i = __sync_fetch_and_add(n, 1);
    struct rec *again = events.ringbuf_reserve(sizeof(struct rec));
    if (again) {
        again->w[0] = t0;
        events.ringbuf_submit(again, BPF_RB_NO_WAKEUP);
    }
    if (i >= LOG || !ra || !*ra) return;
    int k = i;
    struct fail *f = fails.lookup(&k);
    if (!f) return;
    u64 rb = *ra;
    f->ts = t0; f->took = took; f->cpu = bpf_get_smp_processor_id(); f->again = again != 0;
    bpf_probe_read_kernel(&f->cons, 8, (void *)(rb + OFF_CONS));
    bpf_probe_read_kernel(&f->prod, 8, (void *)(rb + OFF_PROD));
    bpf_probe_read_kernel(&f->pend, 8, (void *)(rb + OFF_PEND));
    bpf_probe_read_kernel(&f->lock, 4, (void *)(rb + OFF_LOCK));
}
TRACEPOINT_PROBE(exceptions, page_fault_user) { put(); return 0; }
TRACEPOINT_PROBE(memcg, mod_memcg_lruvec_state) { put(); return 0; }
TRACEPOINT_PROBE(memcg, count_memcg_events) { put(); return 0; }
"""


class PackIntoReader(RingReader):
    """The consumer as it was before: the position published with
    ``struct.pack_into`` (CPython zero-fills the packed bytes first)."""

    def read(self, max_records: int) -> bytes:
        cons = struct.unpack_from("<Q", self._cons, 0)[0]
        prod = struct.unpack_from("<Q", self._data, 0)[0]
        out, advance = take_records(self._data, self.page + (cons & self.mask), prod - cons, self.record_size,
                                    max_records)
        if advance:
            struct.pack_into("<Q", self._cons, 0, cons + advance)
        return out


READERS = {"store8": RingReader, "pack_into": PackIntoReader}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=65536)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ringbuf-mb", type=int, default=32)
    ap.add_argument("--consumer", choices=["both", *READERS], default="both")
    args = ap.parse_args()
    consumers = list(READERS) if args.consumer == "both" else [args.consumer]
    bcc, kernel = setup_kernel()
    btf = kernel.btf
    off = {m: btf.offsetof("bpf_ringbuf", m) for m in ("consumer_pos", "producer_pos", "pending_pos", "spinlock")}
    size = args.ringbuf_mb << 20
    flags = [f"-DPAGES={size // 4096}", f"-DLOG={LOG}", f"-DOFF_CONS={off['consumer_pos']}",
             f"-DOFF_PROD={off['producer_pos']}", f"-DOFF_PEND={off['pending_pos']}",
             f"-DOFF_LOCK={off['spinlock']}"]
    exe = Path(tempfile.mkdtemp(prefix="chargetrace-rbf-")) / "workload"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(exe), str(ROOT / "tests/live/workload.c")], check=True)
    summary = {c: [0, 0, 0, 0, 0, 0] for c in consumers}  # failed, written, logged, low, full, again
    for run in range(args.runs):
        for consumer in consumers:
            acc = summary[consumer]
            b = bcc.BPF(text=SOURCE.encode(), cflags=flags)
            reader = READERS[consumer](b[b"events"].map_fd, size, 104)
            proc = subprocess.Popen([str(exe), str(args.pages), str(args.rounds)], stdout=subprocess.DEVNULL)
            while proc.poll() is None:
                time.sleep(0.01)
                reader.read(1 << 16)
            while reader.read(1 << 16):
                pass
            n = int(b[b"counts"][0].value)
            acc[0] += n
            acc[1] += int(b[b"counts"][1].value)
            for i in range(min(n, LOG)):
                f = b[b"fails"][i]
                if not f.ts:
                    continue
                occ = (f.prod - f.cons) / size
                acc[2] += 1
                acc[3] += occ < 0.01
                acc[4] += occ > 0.5
                acc[5] += f.again
                print(f"run {run} {consumer}, cpu {f.cpu}: failed in {f.took} ns at producer {f.prod >> 20} MiB; "
                      f"ring {occ:.2%} full, pending "
                      f"{'= producer' if f.pend == f.prod else f'{f.prod - f.pend} B behind'}, lock word "
                      f"{f.lock:#x}; immediate retry {'succeeded' if f.again else 'failed'}")
            del reader
            b.cleanup()
    for consumer, (failed, written, logged, low, full, again) in summary.items():
        print(f"{consumer}: {failed} failed reservations of {failed + written} ({logged} logged): {low} with the "
              f"ring < 1 % full, {full} more than half full; an immediate retry succeeded for {again} of {logged}")


if __name__ == "__main__":
    main()
