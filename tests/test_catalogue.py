import re
from pathlib import Path

from chargetrace.traces import KINDS
from chargetrace.tracer.catalogue import CATALOGUE, MAIN_SOURCE, VARIANTS, _enum_names
from chargetrace.tracer.transport import ringbuf_pages

SOURCE = Path(MAIN_SOURCE).read_text()


def test_every_variant_has_its_c_section() -> None:
    for v in VARIANTS:
        assert re.search(rf"#if(def| defined\()\s*\(?{v.define}\b", SOURCE), v.define
        for _kind, _sym, fn in v.attach:
            assert re.search(rf"^int {fn}\(struct pt_regs \*ctx\)", SOURCE, re.M), fn


def test_order_and_ids() -> None:
    rank = {"tracepoint": 0, "raw_tp": 1, "fentry": 2, "kprobe": 3}
    for event in CATALOGUE:
        assert event.kind in KINDS
        order = [rank[v.how] for v in event.variants]
        assert order == sorted(order), event.name
    ids = [v.pid for v in VARIANTS]
    assert ids == list(range(1, len(VARIANTS) + 1))


def test_enum_aliases_lose() -> None:
    names = _enum_names({"NR_LRU_BASE": 0, "NR_INACTIVE_ANON": 0, "NR_VM_NODE_STAT_ITEMS": 2, "MEMCG_SWAP": 2}, False)
    assert names == {0: "NR_INACTIVE_ANON", 2: "MEMCG_SWAP"}
    assert _enum_names({"MR_COMPACTION": 0}, True) == {0: "compaction"}


def test_ringbuf_pages_power_of_two() -> None:
    assert ringbuf_pages(32) == 8192
    assert ringbuf_pages(0.01) == 4  # 10 KiB -> 2.5 pages -> 4
    assert ringbuf_pages(3) == 1024


def test_reason_names_from_a_format_file(tmp_path) -> None:
    from chargetrace.tracer.kernel import KernelInfo

    fmt = tmp_path / "events" / "migrate" / "mm_migrate_pages"
    fmt.mkdir(parents=True)
    (fmt / "format").write_text(
        'print fmt: "mode=%s reason=%s", __print_symbolic(REC->mode, {0, "MIGRATE_ASYNC"}, {2, "MIGRATE_SYNC"}), '
        '__print_symbolic(REC->reason, {0, "compaction"}, {3, "syscall_or_cpuset"}, {9, "damon"})\n'
    )
    k = KernelInfo("x", None, None, tmp_path)  # type: ignore[arg-type]
    assert k.tracepoint_symbols("migrate", "mm_migrate_pages", "reason") == {
        0: "compaction", 3: "syscall_or_cpuset", 9: "damon"}
    assert k.tracepoint_symbols("migrate", "mm_migrate_pages", "mode") == {0: "MIGRATE_ASYNC", 2: "MIGRATE_SYNC"}
    assert k.tracepoint_symbols("migrate", "absent", "reason") == {}
