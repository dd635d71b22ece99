"""The real-workload corpus: one table of cases, each recorded with
``chargetrace record -- CMD`` on the running kernel and replayed.

Scope: what each workload does, what the replay must say about it (verdict,
rules that must have checked events, charges legitimately still held when the
recording ends, and what holds them) and why the kernel behaves that way.
Limits: cases that need a swap device, or a cgroup made outside the scope, say
so in ``needs``; the harness (``harness.py``) provides or skips them. The same
table serves cgroup v1 (this repository's CI machine, 6.18) and v2 (the lab
guest): where the kernel's answer differs by version, ``only`` restricts a case.

Argument placeholders, filled by the harness: ``{mem}`` the built
``workloads/mem.c``, ``{wl}`` the workloads folder, ``{disk}`` a fresh folder
on a disk file system, ``{tmpfs}`` a fresh folder on tmpfs, ``{hugetmpfs}`` a
private tmpfs mounted with huge=always, ``{outside}`` a memory cgroup made
outside the scope.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Held", "Case", "CASES", "COUNTER_RULES", "FOLIO_RULES", "CHARGE_RULES", "RULE_NEEDS", "case"]

#: Rules that check the memcg tracepoints' counters and the usage samples (this
#: machine's 6.18 has nothing else: lockdown=integrity refuses the folio-level kprobes
#: and fentry programs).
COUNTER_RULES = ("R3.pgpg", "R3.usage")
#: What a trace must have for a rule of ``Case.rules`` to be required: the event kinds
#: its recording attached, and the cgroup versions whose kernel counts what the rule
#: reads (PGPGIN/PGPGOUT are v1 events: mm/memcontrol-v1.c memcg1_charge_statistics();
#: v2's memory.stat has no pgpgin). The usage samples exist in every command recording.
RULE_NEEDS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "R3.pgpg": (("memcg_stat",), (1,)),
    "R13.anon": (("memcg_stat",), (1, 2)),
    "R3.usage": ((), (1, 2)),
}
#: Rules that need folio-level charge/uncharge probes (kprobes or fentry: the lab guest).
FOLIO_RULES = ("R1", "R3")
#: The rules that check each charge (v1 PGPGIN events, or folio charges): the one that
#: checked most must have checked at least ``Case.min_charges``.
CHARGE_RULES = ("R3.pgpg", "R1", "R3")


@dataclass(frozen=True)
class Held:
    """A charge the kernel legitimately keeps after the scope's tasks are gone."""

    #: replay --json "held" column(s): anon, file (page cache), shmem (tmpfs, memfd), kmem,
    #: sock; "a+b" = their sum
    holder: str
    #: at least this many pages reported held by it; 0 = it may hold some (explained, not required)
    min_pages: int
    why: str
    #: reclaim may swap it out when a swap device is on (then min_pages does not apply)
    swappable: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    verdict: str  # the true verdict for the kernel: balanced | violations | inconclusive | unchecked
    rules: tuple[str, ...]  # counter-level rules that must have checked > 0 events (RULE_NEEDS)
    reason: str  # what the kernel does for this workload (file, function, commit)
    covers: tuple[str, ...]  # the item-5 topics this case stands for
    held: tuple[Held, ...] = ()
    folio_rules: tuple[str, ...] = FOLIO_RULES  # must check > 0 where folio probes attached
    exit_status: int = 0
    oom_kills: int | None = 0  # None: not checked
    #: at least this many charges (v1 PGPGIN events, or folio charges) checked by a CHARGE_RULES
    #: rule: what the workload itself charged in the scope, so "balanced" is not about nothing
    min_charges: int = 0
    #: tasks expected in scope.moved_out (moved to a memcg outside the scope), and whether
    #: the recorder followed them (False: their charges were not seen)
    moved_out: int = 0
    followed: bool = True
    #: memcgs expected in scope.memcgs: the scope's own plus those made by its tasks
    scope_memcgs: int = 1
    #: the same on cgroup v2 where it differs: a v2 shell that makes a child memcg first moves
    #: to a leaf child of its own (workloads/lib.sh make_child, the "no internal process" rule)
    scope_memcgs_v2: int | None = None
    #: tasks expected in scope.tasks_left (still running when the recorder's exit wait ended)
    tasks_left: int = 0
    needs: tuple[str, ...] = ()  # "swap", "outside"
    only: tuple[int, ...] = (1, 2)  # cgroup versions the case runs on
    #: extra `chargetrace record` options (before "--")
    record_args: tuple[str, ...] = ()
    #: non-empty: the replay is known wrong here (strict xfail); says which branch must fix what
    xfail: str = ""
    timeout: float = 240.0


_PAGES = 8192  # 32 MiB of order-0 anon: ~5 s to record here, large against the 128-page stock


CASES: tuple[Case, ...] = (
    Case(
        name="anon-order0",
        argv=("{mem}", "anon", str(_PAGES)),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        covers=("anon order 0",),
        min_charges=_PAGES,
        reason="each write fault charges one 4 KiB folio (mm/memory.c do_anonymous_page() -> "
               "mem_cgroup_charge()); exit_mmap() frees and uncharges them all",
    ),
    Case(
        name="anon-thp",
        argv=("{mem}", "thp", "32"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        covers=("anon THP (madvise)",),
        min_charges=16,
        reason="MADV_HUGEPAGE with THP 'madvise': one PMD fault charges a 512-page folio "
               "(mm/huge_memory.c __do_huge_pmd_anonymous_page()); v1 PGPGIN counts it once "
               "(memcg1_charge_statistics() nr_pages>0 -> one PGPGIN event)",
    ),
    Case(
        name="anon-thp-split",
        argv=("{mem}", "thp", "32", "split"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        covers=("anon THP (madvise)", "large folio split"),
        min_charges=16,
        reason="unmapping 4 KiB of a PMD-mapped THP splits the PMD and queues the folio for a "
               "deferred split (mm/huge_memory.c deferred_split_folio()); once split, its 512 "
               "pages are uncharged as up to 512 folios: PGPGOUT events may exceed PGPGIN",
    ),
    Case(
        name="pagecache-kept",
        argv=("{mem}", "file", "{disk}/kept", "48", "keep"),
        verdict="balanced",
        rules=COUNTER_RULES,
        covers=("page cache kept (disk)",),
        min_charges=24,
        reason="write(2) charges page-cache folios (mm/filemap.c __filemap_add_folio() -> "
               "mem_cgroup_charge(); ext4 uses large folios since 6.16); they outlive the "
               "task because the inode keeps them, until the recorder's settle reclaims them "
               "(v1 memory.force_empty, v2 memory.reclaim: the workload fsync()s, so they are "
               "clean and reclaimable), so nothing is held after settling",
    ),
    Case(
        name="pagecache-deleted",
        argv=("{mem}", "file", "{disk}/gone", "48", "delete"),
        verdict="balanced",
        rules=COUNTER_RULES,
        covers=("page cache deleted (disk)",),
        min_charges=24,
        reason="unlink of a file with no other reference truncates its page cache "
               "(mm/truncate.c truncate_inode_pages_final()): every folio is uncharged",
    ),
    Case(
        name="tmpfs-kept",
        argv=("{mem}", "file", "{tmpfs}/kept", "32", "keep"),
        verdict="balanced",
        rules=COUNTER_RULES,
        held=(Held("shmem", 8192, "a tmpfs file's folios stay charged while it exists; without swap "
                   "reclaim cannot move them anywhere", swappable=True),),
        covers=("tmpfs/shmem kept",),
        min_charges=8192,
        reason="tmpfs folios are charged at shmem_add_to_page_cache() (mm/shmem.c) and are "
               "only freed by truncation or swapped out by reclaim",
    ),
    Case(
        name="tmpfs-deleted",
        argv=("{mem}", "file", "{tmpfs}/gone", "32", "delete"),
        verdict="balanced",
        rules=COUNTER_RULES,
        covers=("tmpfs/shmem deleted",),
        min_charges=8192,
        reason="unlink of the last link evicts the shmem inode (mm/shmem.c shmem_evict_inode() -> "
               "shmem_truncate_range()): every folio is uncharged",
    ),
    Case(
        name="huge-tmpfs-deleted",
        argv=("{mem}", "file", "{hugetmpfs}/gone", "32", "delete"),
        verdict="balanced",
        rules=COUNTER_RULES,
        min_charges=16,
        covers=("tmpfs/shmem deleted", "large folios"),
        reason="a huge=always tmpfs allocates 2 MiB shmem folios (mm/shmem.c shmem_alloc_and_add_folio()), "
               "each one charge of 512 pages (v1: one PGPGIN event); unlink truncates and uncharges them",
    ),
    Case(
        name="memfd",
        argv=("{mem}", "memfd", "32"),
        verdict="balanced",
        rules=COUNTER_RULES,
        covers=("memfd",),
        min_charges=8192,
        reason="a memfd is an unlinked shmem file (mm/memfd.c memfd_create()); its folios are "
               "charged at fault and uncharged when the last fd and mapping go at exit",
    ),
    Case(
        name="fork-cow",
        argv=("{mem}", "fork", "4096"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        covers=("fork + COW",),
        min_charges=2 * 4096,
        reason="fork shares the parent's anon folios without a charge (mm/memory.c "
               "copy_present_pte()); the child's write fault charges a copy "
               "(wp_page_copy() -> mem_cgroup_charge())",
    ),
    Case(
        name="threads",
        argv=("{mem}", "threads", "4", "2048"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        covers=("multi-threaded allocation",),
        min_charges=4 * 2048,
        reason="four threads fault concurrently; each CPU's charge stock "
               "(mm/memcontrol.c consume_stock()/refill_stock()) batches the counter updates",
    ),
    Case(
        name="child-memcg",
        argv=("{wl}/child-memcg.sh", "{mem}", str(_PAGES), "{disk}/child-file"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        covers=("child memcgs created and removed inside the scope",),
        min_charges=_PAGES,
        scope_memcgs=2,
        scope_memcgs_v2=3,
        reason="a task in a child memcg charges the child (mm/memcontrol.c charge_memcg() uses "
               "the task's own memcg); usage is hierarchical (page_counter_try_charge() walks to "
               "the root), so the scope's usage includes the child's",
    ),
    Case(
        name="move-out",
        argv=("{wl}/move-out.sh", "{outside}", "{mem}", str(_PAGES)),
        verdict="inconclusive",
        rules=COUNTER_RULES,
        needs=("outside",),
        covers=("a task that moves itself into a cgroup created outside the scope",),
        moved_out=1,
        followed=False,
        reason="after the move (cgroup.procs) new charges go to the new memcg; with "
               "move_charge_at_immigrate 0 (v1) or on v2 nothing moves back or forth. The cgroup "
               "existed before the recording, so its earlier charges are unknown and the recorder "
               "does not follow the task: nearly all of the scope's faults charged a memcg the "
               "trace did not see, and balance cannot be proven (inconclusive, not balanced)",
    ),
    Case(
        name="move-out-new",
        argv=("{wl}/move-out-new.sh", "{mem}", str(_PAGES)),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        min_charges=_PAGES,
        scope_memcgs=2,
        covers=("a task that moves itself into a cgroup created outside the scope",),
        reason="a scope task makes the cgroup while the recording runs: the recorder adds it to the "
               "scope (cgroup:cgroup_mkdir) though it lies outside the scope's subtree, follows the "
               "task into it (cgroup:cgroup_attach_task) and sees its charges there; exit uncharges them",
    ),
    Case(
        name="outlive",
        argv=("sh", "-c", "{mem} linger 4096 500 & exit 0"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        covers=("a task that outlives the main command",),
        min_charges=4096,
        reason="the background task stays in the scope's memcg after the shell exits; its "
               "charges are freed only when it exits 0.5 s later, within the recorder's exit wait",
    ),
    Case(
        name="outlive-bound",
        argv=("sh", "-c", "{mem} linger 4096 30000 & exit 0"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        min_charges=4096,
        tasks_left=1,
        covers=("a task that outlives the main command",),
        reason="the background task still runs when the recorder's exit wait (2 s) ends: it is "
               "listed in scope.tasks_left and killed so the scope memcg can go; its charges are "
               "freed by that exit (mm/oom_kill.c is not involved: a plain SIGKILL)",
    ),
    Case(
        name="limit-reclaim",
        argv=("{wl}/limit.sh", "16M", "{mem}", "file", "{disk}/big", "96", "delete"),
        verdict="balanced",
        rules=COUNTER_RULES,
        covers=("memory limit with reclaim",),
        min_charges=4096,
        reason="96 MiB of page cache under a 16 MiB limit: try_charge_memcg() reclaims the "
               "memcg's own clean page cache (mm/vmscan.c try_to_free_mem_cgroup_pages()), "
               "each reclaimed folio uncharged at __remove_mapping()",
    ),
    Case(
        name="limit-oom",
        argv=("{wl}/limit.sh", "16M", "{mem}", "hog", "128"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        exit_status=128 + 9,
        oom_kills=1,
        covers=("memory limit with an OOM kill",),
        min_charges=4096,
        reason="anon cannot be reclaimed without swap: at the limit mem_cgroup_out_of_memory() "
               "kills the task (SIGKILL); its memory is freed by the OOM reaper / exit_mmap()",
    ),
    Case(
        name="many-files",
        # 5,000: creating and removing files on this shared machine's disk costs ~5 ms each under load
        argv=("{mem}", "files", "{disk}/many", "5000"),
        verdict="balanced",
        rules=COUNTER_RULES,
        held=(Held("kmem+file", 0, "inodes and dentries of files that still exist are accounted slab "
                   "objects (fs/inode.c, fs/dcache.c), with one page-cache page each; how many the "
                   "settle's reclaim frees varies from run to run (20,000 files left 40 to 941 pages)"),),
        covers=("many files (kmem)",),
        min_charges=5000,
        reason="each created file allocates an accounted inode and dentry (SLAB_ACCOUNT caches) "
               "and a page-cache folio for its byte; they outlive the task, until the settle's "
               "reclaim shrinks the unused dentries and inodes with their page cache "
               "(mm/vmscan.c shrink_slab() for the memcg): what stays is within the stock tolerance",
    ),
    Case(
        name="many-files-tmpfs",
        argv=("{mem}", "files", "{tmpfs}/many", "20000", "0"),
        verdict="balanced",
        rules=COUNTER_RULES,
        held=(Held("kmem", 1000, "tmpfs inodes and dentries of files that still exist are accounted "
                   "slab objects that no shrinker can free: the dentry pins the inode"),),
        covers=("many files (kmem)",),
        reason="20,000 empty tmpfs files: each allocates an accounted shmem inode and dentry "
               "(mm/shmem.c shmem_get_inode(), SLAB_ACCOUNT) and no page; tmpfs dentries stay "
               "pinned while the file exists, so reclaim cannot free them",
    ),
    Case(
        name="no-counters",
        argv=("sh", "-c", "{mem} anon 1024 && {mem} files {tmpfs}/f 200 0"),
        record_args=("--events", "fault,exit"),
        verdict="unchecked",
        rules=(),
        covers=("a recording with nothing to check",),
        reason="recorded with faults and exits only: no charge, uncharge or memcg counter event, so "
               "nothing the workload charged can be judged; what the memcg still holds after "
               "settling (200 tmpfs inodes: kernel memory) is known only from memory.stat, and "
               "comparing memory.usage_in_bytes with memory.stat checks the kernel against itself",
    ),
    Case(
        name="swap-out-in",
        argv=("{wl}/limit.sh", "8M", "{mem}", "swap", "32"),
        # each swapped page costs ~30 events (charge, swap-out and swap-in counters): a larger
        # ring buffer keeps a busy two-CPU machine from dropping any (which is inconclusive)
        record_args=("--ringbuf-mb", "128"),
        verdict="balanced",
        rules=COUNTER_RULES + ("R13.anon",),
        needs=("swap",),
        covers=("swap out and in",),
        min_charges=8192 + 4096,
        reason="above the limit reclaim swaps anon out (v1: the charge moves to the memsw "
               "counter, mm/memcontrol-v1.c memcg1_swapout(); v2 keeps it in swap.current); "
               "reading back charges each page again at swap-in "
               "(mm/memcontrol.c mem_cgroup_swapin_charge_folio())",
    ),
)


def case(name: str) -> Case:
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(name)
