"""choose_probes' one-compile fast path and its per-variant fallback (fake BCC, no kernel)."""

from __future__ import annotations

from pathlib import Path

from chargetrace.tracer.catalogue import CATALOGUE
from chargetrace.tracer.trials import choose_probes
from chargetrace.tracer.headers import HeaderSource
from chargetrace.tracer.kernel import KernelInfo


class _FakeBcc:
    """Counts compiles; fails attaches to ``bad_syms`` and compiles that define ``bad_define``."""

    def __init__(self, bad_syms: set[str] = frozenset(), bad_define: str | None = None) -> None:
        self.compiles = 0
        outer = self

        class BPF:
            KPROBE = 2

            def __init__(self, src_file: bytes, cflags: list[str]) -> None:
                outer.compiles += 1
                if bad_define and any(f.startswith(f"-D{bad_define}=") for f in cflags):
                    raise Exception("Failed to compile BPF module")

            def load_func(self, fn: bytes, kind: int) -> None:
                pass

            def attach_kprobe(self, event: bytes, fn_name: bytes) -> None:
                if event.decode() in bad_syms:
                    raise Exception(f"Failed to attach BPF program {fn_name!r} to kprobe {event!r}")

            attach_kretprobe = lambda self, event, fn_name, maxactive=0: self.attach_kprobe(event, fn_name)  # noqa: E731

            def cleanup(self) -> None:
                pass

        self.BPF = BPF


def _kernel(tmp_path: Path, symbols: list[str]) -> KernelInfo:
    tracefs = tmp_path / "tracing"
    (tracefs / "events").mkdir(parents=True)
    (tracefs / "kprobe_events").write_text("")
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("".join(f"ffffffff81000000 T {s}\n" for s in symbols))
    return KernelInfo("6.1.192", None, HeaderSource("kheaders", None, real=True), tracefs, kallsyms)


_SYMS_61 = ["__mem_cgroup_charge", "__mem_cgroup_uncharge", "__mem_cgroup_uncharge_list", "mem_cgroup_migrate",
            "free_zone_device_page", "migrate_vma_setup", "migrate_vma_pages", "migrate_vma_finalize",
            "migrate_device_range", "migrate_device_pages", "migrate_device_finalize", "do_swap_page",
            "dmirror_devmem_fault"]


def test_one_compile_when_every_candidate_attaches(tmp_path: Path) -> None:
    bcc = _FakeBcc()
    choices = choose_probes(bcc, _kernel(tmp_path, _SYMS_61))
    assert bcc.compiles == 1
    got = {c.event: c.variant.probe for c in choices if c.variant is not None}
    assert got["device_free"] == "kprobe:free_zone_device_page"
    assert got["device_fault"].endswith(":dmirror_devmem_fault")
    assert len(choices) == len(CATALOGUE)


def test_failed_attach_falls_back_to_the_next_variant(tmp_path: Path) -> None:
    bcc = _FakeBcc(bad_syms={"dmirror_devmem_fault"})
    kernel = _kernel(tmp_path, [*_SYMS_61, "nouveau_dmem_migrate_to_ram"])
    choices = {c.event: c for c in choose_probes(bcc, kernel)}
    fault = choices["device_fault"]
    assert fault.variant is not None and fault.variant.probe.endswith(":nouveau_dmem_migrate_to_ram")
    assert any("dmirror_devmem_fault" in r for r in fault.reasons)
    assert bcc.compiles == 2  # the batch, then the remaining kprobe sections once


def test_device_fault_never_falls_back_to_do_swap_page(tmp_path: Path) -> None:
    # do_swap_page also runs for every ordinary swap-in: without a driver's
    # migrate_to_ram callback there is no device_fault probe, and it says why.
    syms = [s for s in _SYMS_61 if s != "dmirror_devmem_fault"]
    choices = {c.event: c for c in choose_probes(_FakeBcc(), _kernel(tmp_path, syms))}
    fault = choices["device_fault"]
    assert fault.variant is None
    assert "do_swap_page is not used" in fault.as_meta()["reason"]


def test_combined_compile_failure_tries_each_variant(tmp_path: Path) -> None:
    bcc = _FakeBcc(bad_define="CT_KP_TRANSFER")
    choices = {c.event: c for c in choose_probes(bcc, _kernel(tmp_path, _SYMS_61))}
    assert bcc.compiles > 2
    assert choices["charge"].variant is not None
    assert choices["transfer"].variant is None


def test_raw_tp_of_a_missing_event_is_skipped_without_btf(tmp_path: Path) -> None:
    # 6.1 has no memcg:* events: without BTF the raw_tp variants must fail their
    # precheck, not the combined trial program.
    kernel = _kernel(tmp_path, _SYMS_61)
    (kernel.tracefs / "events" / "sched" / "sched_process_exit").mkdir(parents=True)
    bcc = _FakeBcc()
    choices = {c.event: c for c in choose_probes(bcc, kernel)}
    assert bcc.compiles == 1
    assert choices["memcg_events"].variant is None
    assert any("no count_memcg_events event in tracefs" in r for r in choices["memcg_events"].reasons)
    assert choices["exit"].variant is not None and choices["exit"].variant.probe == "raw_tp:sched_process_exit"
