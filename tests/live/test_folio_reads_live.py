"""The folio readers of the kprobe/fentry variants, checked on a live kernel
through a raw tracepoint that passes a struct folio * (pagemap:mm_lru_insertion)."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

from chargetrace.tracer.catalogue import BPF_DIR
from chargetrace.tracer.trials import capture_stderr
from chargetrace.tracer.cgroups import create_child, memcg_of_pid
from chargetrace.tracer.recorder import _setup_kernel

pytestmark = pytest.mark.live

N = 2048


def test_folio_memcg_and_size_read_by_btf_offsets(workload: Path) -> None:
    bcc, kernel = _setup_kernel()
    if kernel.raw_tp_nargs("mm_lru_insertion") is None:
        pytest.skip("kernel has no BTF for raw tracepoint mm_lru_insertion")
    assert kernel.can_read_folios
    flags = [f"-I{BPF_DIR}", *kernel.base_cflags(folio_reads=True)]
    with capture_stderr():
        bpf = bcc.BPF(src_file=str(Path(__file__).with_name("folio_reads.c")).encode(), cflags=flags)
    cg = create_child(memcg_of_pid("self"), f"chargetrace-test-{os.getpid()}")
    try:
        cmd = f"echo $$ > {cg.path}/cgroup.procs && exec {workload} {N}"
        out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
        memcg = int(dict(kv.split("=") for kv in out.split())["memcg"])
        assert memcg == cg.id
        # Folios still in a per-CPU LRU-add batch reach the LRU (and the
        # tracepoint) only when the batch drains: settling drains every CPU's
        # batch (lru_add_drain_all() via force_empty / reclaim) before counting.
        cg.settle()
        key = ctypes.c_ulonglong(cg.id)
        folios = bpf[b"folios"][key].value
        pages = bpf[b"pages"][key].value
    finally:
        with capture_stderr():
            bpf.cleanup()
        cg.settle()
        cg.remove()
    # Every buffer page is one order-0 anon folio that enters the LRU charged
    # to the workload's memcg (plus its few startup pages): the memcg id read
    # from folio->memcg_data matches, and nr_pages is 1 for each.
    assert N <= folios <= N + 64
    assert pages == folios
