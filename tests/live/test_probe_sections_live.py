"""Every kprobe section of tracer/bpf/recorder.c compiles and passes the
verifier on this kernel, including those whose symbols this kernel lacks
(swap-in and hugetlb charge paths of other eras), and the cgroup follow
tracepoints load. Attaching is what the catalogue trials decide."""

from __future__ import annotations

import pytest

from chargetrace.tracer.catalogue import MAIN_SOURCE, VARIANTS
from chargetrace.tracer.trials import capture_stderr, compile_cflags
from chargetrace.tracer.program import FOLLOW_TRACEPOINTS
from chargetrace.tracer.recorder import setup_kernel

pytestmark = pytest.mark.live


def test_every_kprobe_section_loads() -> None:
    bcc, kernel = setup_kernel()
    if not kernel.can_read_folios:
        pytest.skip("no struct offsets (no BTF, no headers): kprobe sections compile to nothing")
    sections = {}
    for v in VARIANTS:
        if v.how == "kprobe":
            sections.setdefault(v.define, v)
    extra = ["-DCT_RB_PAGES=16", "-DCT_SPLIT_HAS_ORDERS=1"]
    extra += [f"-D{d}=1" for n, d in FOLLOW_TRACEPOINTS.items() if kernel.tracepoint_exists("cgroup", n)]
    with capture_stderr() as lines:
        try:
            bpf = bcc.BPF(src_file=str(MAIN_SOURCE).encode(), cflags=compile_cflags(kernel, list(sections.values()),
                                                                                       extra))
        except Exception as exc:  # bcc raises bare Exception
            pytest.fail(f"compile failed: {exc}: {' | '.join(lines[-8:])}")
    try:
        loaded = []
        for v in sections.values():
            for _kind, _sym, fn in v.attach:
                with capture_stderr() as lines:
                    try:
                        bpf.load_func(fn.encode(), bcc.BPF.KPROBE)
                    except Exception as exc:
                        pytest.fail(f"{fn}: verifier: {exc}: {' | '.join(lines[-8:])}")
                loaded.append(fn)
        assert {"ct_kret_swapin", "ct_kret_hugetlb", "ct_kret_htlb_try", "ct_kp_htlb_commit",
                "ct_kret_htlb_commit", "ct_kret_charge"} <= set(loaded)
    finally:
        with capture_stderr():
            bpf.cleanup()


def test_probes_lists_every_charge_path_with_its_why_not() -> None:
    import subprocess

    from .conftest import cli

    proc = subprocess.run(cli("probes"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines()[2:]}
    for event in ("charge", "swapin_charge", "hugetlb_charge", "replace", "device_fault"):
        line = lines[event]
        # attached by a kprobe, or none with each variant's reason
        assert "[kprobe]" in line or ("none:" in line and "kprobe:" in line), line
        assert "verifier" not in line and "compile failed" not in line, line
    assert "do_swap_page" not in lines["device_fault"].split("note:")[0]
    if "none:" in lines["device_fault"]:
        assert "do_swap_page is not used" in lines["device_fault"]
