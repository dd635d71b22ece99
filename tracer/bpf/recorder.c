/* The recorder's one BPF program: the transport, drop counter and scope
 * maps, the tracepoint and raw-tracepoint variants, then the kprobe and
 * fentry variants. One file on purpose: BCC generates the `args` structs of
 * TRACEPOINT_PROBEs and rewrites map calls (events.ringbuf_output, x.lookup)
 * only in the main file; an included helper calling a map compiles to an
 * indirect call the verifier rejects. common.h holds only map-free code.
 *
 * Every variant is off unless tracer/catalogue.py enables it with -D; the
 * define's value is the variant's probe id. Trials compile one tracepoint,
 * raw-tp or fentry variant at a time (BCC loads and attaches those at once)
 * and all kprobe variants together (their programs load one by one).
 * Raw tracepoints get their TP_PROTO arguments in ctx->args[]; argument
 * counts that vary by kernel come from BTF (btf_trace_<name>) as
 * CT_RAW_*_NARGS. */
#include "common.h"

/* ==== transport, drop counter, scope ==================================== */
#ifdef CT_PERF
BPF_PERF_OUTPUT(events);
#else
#ifndef CT_RB_PAGES
#define CT_RB_PAGES 8192
#endif
BPF_RINGBUF_OUTPUT(events, CT_RB_PAGES);
#endif

/* Events the transport refused (ring full): BCC's ring buffer has no lost
 * callback, so the count is kept here, per CPU, and read by the recorder. */
BPF_PERCPU_ARRAY(drops, u64, 1);

/* Scope: allowed memcg ids (cgroup ids) and thread-group ids. */
BPF_HASH(scope_memcg, u64, u8, 256);
BPF_HASH(scope_tgid, u32, u8, 65536);

/* The one switch: every probe returns at once until the recorder sets
 * armed[0] = 1, which it does after the last probe of the recording is
 * attached. Probes attach one by one (kprobes seconds apart under TCG); rows
 * from a half-attached recording (a charge seen, its uncharge probe not yet
 * live) would be false findings. */
BPF_ARRAY(armed, u32, 1);

static __always_inline int ct_armed(void)
{
    int k = 0;
    u32 *on = armed.lookup(&k);
    return on != NULL && *on != 0;
}

/* First statement of every probe. A function call, so BCC can rewrite the
 * map access inside (it cannot inside a macro body). */
#define CT_GATE()                                                               \
    do {                                                                        \
        if (!ct_armed())                                                        \
            return 0;                                                           \
    } while (0)

/* ==== ledger and lossless emit (read by tracer/ledger.py) ============== */
/* The ledger: per (memcg, kind[, probe, item]) sums kept by the probes
 * themselves, before the record goes to the transport, so they stay exact
 * when the transport refuses a record. Per-CPU values (no shared cache line
 * between CPUs), summed in Python at the end. `pages` is the sum of
 * nr_pages, or of the counter delta (`value`) for memcg_stat rows. Full map
 * = counted in ct_tx[CT_TX_LEDGER_FULL] (the ledger is then incomplete). */
#ifndef CT_LEDGER_KEYS
#define CT_LEDGER_KEYS 16384
#endif
struct ct_ledger_key {
    u64 memcg;
    u16 kind;
    u16 probe; /* memcg_stat only: names `item` (one enum per tracepoint) */
    s32 item;  /* memcg_stat only */
};
struct ct_ledger_val {
    u64 events;
    s64 pages;
};
BPF_PERCPU_HASH(ledger, struct ct_ledger_key, struct ct_ledger_val, CT_LEDGER_KEYS);

/* Transport counters, per CPU. */
#define CT_TX_RETRIED 0 /* records a second try got into the ring */
#define CT_TX_LEDGER_FULL 1
#define CT_TX_N 2
BPF_PERCPU_ARRAY(ct_tx, u64, CT_TX_N);

static __always_inline void ct_tx_add(int what)
{
    u64 *c = ct_tx.lookup(&what);
    if (c)
        *c += 1;
}

static __always_inline void ct_ledger_add(struct ct_event *e)
{
    struct ct_ledger_key k = {};
    k.memcg = e->memcg;
    k.kind = e->kind;
    s64 pages = e->nr_pages;
    if (e->kind == CT_KIND_memcg_stat) {
        k.probe = e->probe;
        k.item = e->item;
        pages = e->value;
    }
    struct ct_ledger_val zero = {};
    struct ct_ledger_val *v = ledger.lookup_or_try_init(&k, &zero);
    if (!v) {
        ct_tx_add(CT_TX_LEDGER_FULL);
        return;
    }
    /* Atomic although per-CPU: a raw_tp program can interrupt another one
     * on the same CPU (only tracepoint/kprobe programs exclude each other). */
    __sync_fetch_and_add(&v->events, 1);
    __sync_fetch_and_add(&v->pages, pages);
}

#ifndef CT_PERF
/* A refused record gets one more try. The drops seen at low rates were not
 * this side's doing: the consumer used to publish its position with
 * Python's struct.pack_into, which zero-fills the field before writing it,
 * and __bpf_ringbuf_reserve() (kernel/bpf/ringbuf.c) reading a consumer
 * position of 0 once the ring had wrapped refused the record as "full"
 * (bench/ringbuf_failures.py; fixed in tracer/ringbuf.py). A refusal can
 * still be transient: the reservation lock is an rqspinlock since "bpf:
 * Convert ringbuf map to rqspinlock" (a650d38915c1, v6.15) and a lock error
 * returns the same NULL as a full ring. One retry, not a loop or a park:
 * this is inlined into every probe, some of them loops over up to 512
 * folios, and the verifier walks every path of every iteration. */
static __always_inline int ct_rb_emit(struct ct_event *e)
{
    int rc = events.ringbuf_output(e, sizeof(*e), BPF_RB_NO_WAKEUP);
#ifndef CT_NO_RETRY
    if (rc != 0) {
        rc = events.ringbuf_output(e, sizeof(*e), BPF_RB_NO_WAKEUP);
        if (rc == 0)
            ct_tx_add(CT_TX_RETRIED);
    }
#endif
    return rc;
}
#endif

/* Emit a record: ledger first, then the transport; count it as dropped when
 * the transport has no room. BPF_RB_NO_WAKEUP: the recorder polls every
 * ~10 ms, a wakeup per event would slow the traced task ~4x (measured, see
 * BENCHMARKS.md). With CT_AGG_COUNTERS, memcg_stat rows only go to the
 * ledger: the recorder writes them as periodic per-(memcg, item) deltas.
 * Every probe passes CT_GATE() first: the recorder disarms the switch to
 * end the recording (tracer/ledger.py stop_probes), so the last ledger
 * snapshot and the stream end at the same point.
 * A function, not a macro: BCC cannot rewrite map calls inside macros. */
static __always_inline void ct_emit(void *ctx, struct ct_event *e)
{
    ct_ledger_add(e);
#ifdef CT_AGG_COUNTERS
    if (e->kind == CT_KIND_memcg_stat)
        return;
#endif
#ifdef CT_PERF
    int rc = events.perf_submit(ctx, e, sizeof(*e));
#else
    int rc = ct_rb_emit(e);
#endif
    if (rc != 0) {
        int k = 0;
        u64 *c = drops.lookup(&k);
        if (c)
            *c += 1;
    }
}
#define CT_EMIT(ctxp, ep) ct_emit((void *)(ctxp), (ep))

static __always_inline void ct_fill(struct ct_event *e, u16 kind, u16 probe)
{
    u64 id = bpf_get_current_pid_tgid();
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    e->kind = kind;
    e->probe = probe;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
}

/* A row of scalars only (tracepoint and raw-tracepoint variants alike). */
static __always_inline int ct_emit_scalars(void *ctx, u16 kind, u16 probe, u64 memcg, u64 addr,
                                           s64 value, s64 ret, s32 item)
{
    struct ct_event e = {};
    ct_fill(&e, kind, probe);
    e.memcg = memcg;
    e.addr = addr;
    e.value = value;
    e.ret = ret;
    e.item = item;
    CT_EMIT(ctx, &e);
    return 0;
}

/* The thread group of current has exited (fallback when the tracepoint has
 * no group_dead): the leader's exit approximates the group's end. */
static __always_inline s64 ct_leader_exiting(void)
{
    u64 id = bpf_get_current_pid_tgid();
    return (id >> 32) == (u32)id;
}

static __always_inline int ct_memcg_ok(u64 memcg)
{
#ifdef CT_SCOPE_ALL
    return 1;
#else
    return memcg != 0 && scope_memcg.lookup(&memcg) != NULL;
#endif
}

static __always_inline int ct_task_ok(void)
{
#ifdef CT_SCOPE_ALL
    return 1;
#else
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return scope_tgid.lookup(&tgid) != NULL;
#endif
}

/* ---- following the scope: new memcgs, moves, unseen faults -------------- */
/* Memcgs created while armed (cgroup id -> creator's tgid if it was a scope
 * task, else 0): every charge in them was observable, so a scope task that
 * moves into one is followed. conf[0] = the memory controller's hierarchy id
 * (/proc/cgroups; 0 on cgroup v2), set by the recorder before arming. */
BPF_HASH(created, u64, u64, 4096);
BPF_ARRAY(conf, u32, 1);

/* Scope tasks that moved to a memcg outside the scope. */
struct ct_move {
    u64 memcg;
    u32 followed;
    u32 pad;
};
BPF_HASH(moved, u32, struct ct_move, 4096);

/* Faults of scope tasks: [0] all, [1] those of tasks that sit in a memcg the
 * recording does not see (moved out, not followed): their charges are not
 * in the trace (scope.unseen_fault_share). */
BPF_PERCPU_ARRAY(fault_counts, u64, 2);

static __always_inline void ct_count_fault(void)
{
#ifndef CT_SCOPE_ALL
    int k = 0;
    u64 *c = fault_counts.lookup(&k);
    if (c)
        *c += 1;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct ct_move *m = moved.lookup(&tgid);
    if (m && !m->followed) {
        k = 1;
        c = fault_counts.lookup(&k);
        if (c)
            *c += 1;
    }
#endif
}

static __always_inline int ct_memcg_root_ok(int root)
{
    int k = 0;
    u32 *want = conf.lookup(&k);
    return want != NULL && (u32)root == *want;
}

#if defined(CT_TP_CGMKDIR) && !defined(CT_SCOPE_ALL)
/* cgroup:cgroup_mkdir (v4.13, "cgroup: add tracepoints for basic
 * operations", ed1777de2541): root = hierarchy id, id = cgroup id. A memcg
 * made by a scope task joins the scope at once (its charges from the first
 * one); the recorder's tree rescan adds descendants made by other tasks. */
TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    CT_GATE();
    if (!ct_memcg_root_ok(args->root))
        return 0;
    u64 id = args->id;
    u64 who = 0;
    if (ct_task_ok()) {
        u8 one = 1;
        who = bpf_get_current_pid_tgid() >> 32;
        scope_memcg.update(&id, &one);
    }
    created.update(&id, &who);
    return 0;
}
#endif

#if defined(CT_TP_CGATTACH) && !defined(CT_SCOPE_ALL)
/* cgroup:cgroup_attach_task (same commit): a task moved to dst_id. pid is the
 * moved task's pid (its tgid when it is the leader, which a cgroup.procs
 * write always moves). Into the scope: the task joins the scope. A scope
 * task out of it: followed into a memcg created while armed, else recorded
 * as moved out (its later faults count as unseen). */
TRACEPOINT_PROBE(cgroup, cgroup_attach_task)
{
    CT_GATE();
    if (!ct_memcg_root_ok(args->dst_root))
        return 0;
    u32 pid = args->pid;
    u64 dst = args->dst_id;
    u8 one = 1;
    if (scope_memcg.lookup(&dst)) {
        scope_tgid.update(&pid, &one);
        moved.delete(&pid);
        return 0;
    }
    if (!scope_tgid.lookup(&pid))
        return 0;
    struct ct_move m = {};
    m.memcg = dst;
    if (created.lookup(&dst)) {
        scope_memcg.update(&dst, &one);
        m.followed = 1;
    }
    moved.update(&pid, &m);
    return 0;
}
#endif


/* ---- fault: exceptions:page_fault_user (x86) ---------------------------- */
#ifdef CT_TP_FAULT
TRACEPOINT_PROBE(exceptions, page_fault_user)
{
    CT_GATE();
    if (!ct_task_ok())
        return 0;
    ct_count_fault();
    return ct_emit_scalars(args, CT_KIND_fault, CT_TP_FAULT, 0, args->address, args->error_code, 0, 0);
}
#endif

#ifdef CT_RAW_FAULT
/* TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code) */
RAW_TRACEPOINT_PROBE(page_fault_user)
{
    CT_GATE();
    if (!ct_task_ok())
        return 0;
    ct_count_fault();
    return ct_emit_scalars(ctx, CT_KIND_fault, CT_RAW_FAULT, 0, ctx->args[0], ctx->args[2], 0, 0);
}
#endif

/* ---- page_migration: migrate:mm_migrate_pages ---------------------------- */
/* System-wide on purpose: compaction/NUMA run in kcompactd/kworker context
 * and are rare (hundreds per compaction run). */
#ifdef CT_TP_MIGRATE
TRACEPOINT_PROBE(migrate, mm_migrate_pages)
{
    CT_GATE();
    return ct_emit_scalars(args, CT_KIND_page_migration, CT_TP_MIGRATE, 0, 0, args->succeeded, args->failed,
                           args->reason);
}
#endif

#ifdef CT_RAW_MIGRATE
/* TP_PROTO(succeeded, failed, thp_succeeded, thp_failed, thp_split,
 * [large_folio_split (v6.12),] mode, reason): reason is always last. */
RAW_TRACEPOINT_PROBE(mm_migrate_pages)
{
    CT_GATE();
    return ct_emit_scalars(ctx, CT_KIND_page_migration, CT_RAW_MIGRATE, 0, 0, ctx->args[0], ctx->args[1],
                           (int)ctx->args[CT_RAW_MIGRATE_NARGS - 1]);
}
#endif

/* ---- memcg_stat: memcg:* counter tracepoints (v6.16+) -------------------- */
/* "memcg: add tracepoints for memcg stat updates" (v6.16). id is the cgroup
 * id; item is the numeric enum index, named in Python from BTF. */
#define CT_MEMCG_TP(name, define)                                               \
    TRACEPOINT_PROBE(memcg, name)                                               \
    {                                                                           \
        CT_GATE();                                                              \
        if (!ct_memcg_ok(args->id))                                             \
            return 0;                                                           \
        return ct_emit_scalars(args, CT_KIND_memcg_stat, define, args->id, 0,   \
                               (s64)args->val, 0, args->item);                  \
    }

#ifdef CT_TP_MEMCG_EVENTS
CT_MEMCG_TP(count_memcg_events, CT_TP_MEMCG_EVENTS)
#endif
#ifdef CT_TP_MEMCG_LRUVEC
CT_MEMCG_TP(mod_memcg_lruvec_state, CT_TP_MEMCG_LRUVEC)
#endif
#ifdef CT_TP_MEMCG_STATE
CT_MEMCG_TP(mod_memcg_state, CT_TP_MEMCG_STATE)
#endif

#ifdef OFF_FOLIO_MEMCG_DATA
/* TP_PROTO(struct mem_cgroup *memcg, int item, <int|unsigned long> val) */
#define CT_MEMCG_RAW(name, define, valtype)                                     \
    RAW_TRACEPOINT_PROBE(name)                                                  \
    {                                                                           \
        CT_GATE();                                                              \
        u64 id = ct_memcg_id((const void *)ctx->args[0]);                       \
        if (!ct_memcg_ok(id))                                                   \
            return 0;                                                           \
        return ct_emit_scalars(ctx, CT_KIND_memcg_stat, define, id, 0,          \
                               (s64)(valtype)ctx->args[2], 0, (int)ctx->args[1]); \
    }
#ifdef CT_RAW_MEMCG_EVENTS
CT_MEMCG_RAW(count_memcg_events, CT_RAW_MEMCG_EVENTS, unsigned long)
#endif
#ifdef CT_RAW_MEMCG_LRUVEC
CT_MEMCG_RAW(mod_memcg_lruvec_state, CT_RAW_MEMCG_LRUVEC, int)
#endif
#ifdef CT_RAW_MEMCG_STATE
CT_MEMCG_RAW(mod_memcg_state, CT_RAW_MEMCG_STATE, int)
#endif
#endif

/* ---- fork / exit: keep the tgid scope closed under fork ----------------- */
static __always_inline void ct_scope_add_child(u32 child)
{
#ifndef CT_SCOPE_ALL
    u8 one = 1;
    scope_tgid.update(&child, &one);
    /* The child starts in its parent's memcg: a moved-out parent's child is
     * moved out too. */
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    struct ct_move *m = moved.lookup(&parent);
    if (m) {
        struct ct_move copy = *m;
        moved.update(&child, &copy);
    }
#endif
}

#ifdef CT_TP_FORK
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    CT_GATE();
    /* current is the forking task; parent_pid would be its tid. */
    if (!ct_task_ok())
        return 0;
    u32 child = args->child_pid;
    ct_scope_add_child(child);
    return ct_emit_scalars(args, CT_KIND_fork, CT_TP_FORK, 0, 0, child, 0, 0);
}
#endif

#if defined(CT_RAW_FORK) && defined(OFF_TASK_PID)
/* TP_PROTO(struct task_struct *parent, struct task_struct *child) */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    CT_GATE();
    if (!ct_task_ok())
        return 0;
    u32 child = 0;
    bpf_probe_read_kernel(&child, sizeof(child), (const char *)ctx->args[1] + OFF_TASK_PID);
    ct_scope_add_child(child);
    return ct_emit_scalars(ctx, CT_KIND_fork, CT_RAW_FORK, 0, 0, child, 0, 0);
}
#endif

#ifdef CT_TP_EXIT
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    CT_GATE();
    if (!ct_task_ok())
        return 0;
#ifdef CT_EXIT_HAS_GROUP_DEAD
    /* group_dead is feature-detected from the format file (present on 6.18). */
    s64 gone = args->group_dead ? 1 : 0;
#else
    s64 gone = ct_leader_exiting();
#endif
    return ct_emit_scalars(args, CT_KIND_exit, CT_TP_EXIT, 0, 0, gone, 0, 0);
}
#endif

#ifdef CT_RAW_EXIT
/* TP_PROTO(struct task_struct *p[, bool group_dead]); count from BTF */
RAW_TRACEPOINT_PROBE(sched_process_exit)
{
    CT_GATE();
    if (!ct_task_ok())
        return 0;
#if defined(CT_RAW_EXIT_NARGS) && CT_RAW_EXIT_NARGS >= 2
    s64 gone = ctx->args[1] ? 1 : 0;
#else
    s64 gone = ct_leader_exiting();
#endif
    return ct_emit_scalars(ctx, CT_KIND_exit, CT_RAW_EXIT, 0, 0, gone, 0, 0);
}
#endif

/* ==== kprobe / kretprobe variants ====================================== */
/* kprobe/kretprobe variants: folio-level charge events (mm/memcontrol.c).
 *
 * Functions are named by role; tracer/catalogue.py attaches each to the
 * symbol of the running kernel's era (e.g. ct_kp_charge to
 * __mem_cgroup_charge on 5.16+, mem_cgroup_charge on 5.8-5.14). Every memcg
 * is read FROM THE FOLIO (memcg_data), never from current, so uncharges done
 * by other tasks (reclaim, exit of another process, RCU) are attributed
 * right. Needs OFF_* (BTF or real headers). */

#ifdef OFF_FOLIO_MEMCG_DATA

struct ct_stash {
    u64 a, b, c, d;
};

static __always_inline void ct_emit_folio_row(void *ctx, u16 kind, u16 probe, const void *folio,
                                              u64 memcg, s64 ret, s64 value)
{
    struct ct_event e = {};
    ct_fill(&e, kind, probe);
    e.folio = (u64)folio;
    e.nr_pages = ct_folio_nr(folio);
    e.memcg = memcg;
    e.ret = ret;
    e.value = value;
    CT_EMIT(ctx, &e);
}

static __always_inline void ct_emit_folio(void *ctx, u16 kind, u16 probe, const void *folio, u64 memcg)
{
    ct_emit_folio_row(ctx, kind, probe, folio, memcg, 0, 0);
}

/* A charge returned ``ret`` (kretprobe and fexit variants). */
static __always_inline void ct_emit_charge(void *ctx, u16 probe, const void *folio, long ret)
{
    u64 memcg = ct_folio_memcg(folio);
    /* A failed charge leaves no memcg on the folio: keep it for the scope's
     * own tasks (R2: failed charges have no effect, but are evidence). */
    if (!ct_memcg_ok(memcg) && !(ret != 0 && ct_task_ok()))
        return;
    ct_emit_folio_row(ctx, CT_KIND_charge, probe, folio, ret == 0 ? memcg : 0, ret, 0);
}

/* A device-private folio is being freed (kprobe and fentry variants):
 * value = its refcount at entry, 0 in the >= 5.18 convention, 1 before. */
static __always_inline void ct_emit_device_free(void *ctx, u16 probe, const void *folio)
{
    u64 memcg = ct_folio_memcg(folio);
    if (!ct_memcg_ok(memcg) && !ct_task_ok())
        return;
    int refs = -1;
    bpf_probe_read_kernel(&refs, sizeof(refs), (const char *)folio + OFF_PAGE_REFCOUNT);
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_device_free, probe);
    e.folio = (u64)folio;
    e.nr_pages = ct_folio_nr(folio);
    e.memcg = memcg;
    e.value = refs;
#ifdef CT_PGMAP_READS
    e.pgmap_ops = ct_pgmap_ops(folio); /* which driver's memory is freed */
#endif
    CT_EMIT(ctx, &e);
}

/* ---- charge: kretprobe, folio stashed at entry --------------------------- */
/* Every charge entry point returns int (0 or -errno). PT_REGS_RC is the raw
 * 64-bit register and the callee leaves its upper half undefined (zero in
 * practice): without the (int) cast -ENOMEM reads as 4294967284. */
#if defined(CT_KP_CHARGE) || defined(CT_KP_SWAPIN) || defined(CT_KP_HUGETLB) || defined(CT_KP_HUGETLB_COMMIT)
/* One stash for all: charge entry points do not nest on one thread. */
BPF_HASH(stash_charge, u64, u64, 4096);

static __always_inline int ct_charge_enter(struct pt_regs *ctx)
{
    u64 key = bpf_get_current_pid_tgid();
    u64 folio = PT_REGS_PARM1(ctx);
    stash_charge.update(&key, &folio);
    return 0;
}

static __always_inline int ct_charge_leave(struct pt_regs *ctx, u16 probe, int ret)
{
    u64 key = bpf_get_current_pid_tgid();
    u64 *folio = stash_charge.lookup(&key);
    if (!folio)
        return 0;
    const void *f = (const void *)*folio;
    stash_charge.delete(&key);
    ct_emit_charge(ctx, probe, f, ret);
    return 0;
}
#endif

#ifdef CT_KP_CHARGE
/* __mem_cgroup_charge(folio, mm, gfp) 5.16+ / mem_cgroup_charge(page, mm, gfp)
 * 5.8-5.14: the folio/page is the first argument in every era. */
int ct_kp_charge(struct pt_regs *ctx) { CT_GATE(); return ct_charge_enter(ctx); }
int ct_kret_charge(struct pt_regs *ctx) { CT_GATE(); return ct_charge_leave(ctx, CT_KP_CHARGE, (int)PT_REGS_RC(ctx)); }
#endif

#ifdef CT_KP_SWAPIN
/* mem_cgroup_swapin_charge_folio(folio, mm, gfp, entry) (mm/memcontrol.c;
 * the page variant came with "memcg: charge before adding to swapcache on
 * swapin", Shakeel Butt, v5.11): a swap-in charges the new swap-cache folio
 * without passing through __mem_cgroup_charge. */
int ct_kp_swapin(struct pt_regs *ctx) { CT_GATE(); return ct_charge_enter(ctx); }
int ct_kret_swapin(struct pt_regs *ctx) { CT_GATE(); return ct_charge_leave(ctx, CT_KP_SWAPIN, (int)PT_REGS_RC(ctx)); }
#endif

#ifdef CT_KP_HUGETLB
/* mem_cgroup_charge_hugetlb(folio, gfp) ("memcg/hugetlb: introduce
 * mem_cgroup_charge_hugetlb", Joshua Hahn; 6.18 has it): one call charges a
 * hugetlb folio when memory_hugetlb_accounting is on (cgroup v2 only). */
int ct_kp_hugetlb(struct pt_regs *ctx) { CT_GATE(); return ct_charge_enter(ctx); }
int ct_kret_hugetlb(struct pt_regs *ctx) { CT_GATE(); return ct_charge_leave(ctx, CT_KP_HUGETLB, (int)PT_REGS_RC(ctx)); }
#endif

#ifdef CT_KP_HUGETLB_COMMIT
/* 6.7-6.12 (8cba9576df60 "hugetlb: memcg: account hugetlb-backed memory in
 * memory controller"): alloc_hugetlb_folio() calls
 * mem_cgroup_hugetlb_try_charge(memcg, gfp, nr) and, on 0, later
 * mem_cgroup_commit_charge(folio, memcg). charge_memcg() calls
 * mem_cgroup_commit_charge too, so a commit is a hugetlb charge only after
 * this thread's successful try_charge. */
BPF_HASH(stash_htlb, u64, u8, 4096);
int ct_kret_htlb_try(struct pt_regs *ctx)
{
    CT_GATE();
    if ((int)PT_REGS_RC(ctx) != 0)
        return 0; /* -EOPNOTSUPP (accounting off) or -ENOMEM: nothing charged */
    u64 key = bpf_get_current_pid_tgid();
    u8 one = 1;
    stash_htlb.update(&key, &one);
    return 0;
}
int ct_kp_htlb_commit(struct pt_regs *ctx)
{
    CT_GATE();
    u64 key = bpf_get_current_pid_tgid();
    if (!stash_htlb.lookup(&key))
        return 0;
    stash_htlb.delete(&key);
    return ct_charge_enter(ctx);
}
int ct_kret_htlb_commit(struct pt_regs *ctx) { CT_GATE(); return ct_charge_leave(ctx, CT_KP_HUGETLB_COMMIT, 0); }
#endif

/* ---- uncharge: one row per folio ---------------------------------------- */
#ifdef CT_KP_UNCHARGE
/* __mem_cgroup_uncharge(folio) */
int ct_kp_uncharge(struct pt_regs *ctx)
{
    CT_GATE();
    const void *f = (const void *)PT_REGS_PARM1(ctx);
    u64 memcg = ct_folio_memcg(f);
    if (!ct_memcg_ok(memcg))
        return 0;
    ct_emit_folio(ctx, CT_KIND_uncharge, CT_KP_UNCHARGE, f, memcg);
    return 0;
}
#endif

#ifdef CT_KP_UNCHARGE_LIST
/* __mem_cgroup_uncharge_list(struct list_head *page_list), 5.15-6.8, and
 * mem_cgroup_uncharge_list() before it (<= 5.14, pages): the folios (pages)
 * are chained through folio->lru (page->lru). Bounded walk (the verifier needs a
 * bound; callers pass at most a pagevec/mmu_gather batch). */
#define CT_UNCHARGE_LIST_MAX 512
int ct_kp_uncharge_list(struct pt_regs *ctx)
{
    CT_GATE();
    const char *head = (const char *)PT_REGS_PARM1(ctx);
    const char *node = NULL;
    bpf_probe_read_kernel(&node, sizeof(node), head); /* head->next */
    for (int i = 0; i < CT_UNCHARGE_LIST_MAX; i++) {
        if (!node || node == head)
            break;
        const void *f = node - OFF_FOLIO_LRU;
        u64 memcg = ct_folio_memcg(f);
        if (ct_memcg_ok(memcg))
            ct_emit_folio(ctx, CT_KIND_uncharge, CT_KP_UNCHARGE_LIST, f, memcg);
        bpf_probe_read_kernel(&node, sizeof(node), node);
    }
    return 0;
}
#endif

#ifdef CT_KP_UNCHARGE_FOLIOS
/* __mem_cgroup_uncharge_folios(struct folio_batch *fbatch), 6.9+ ("mm:
 * remove use of folio list from folios_put()"): folios[0..nr). */
#define CT_FBATCH_MAX 32
int ct_kp_uncharge_folios(struct pt_regs *ctx)
{
    CT_GATE();
    const char *fb = (const char *)PT_REGS_PARM1(ctx);
    unsigned char nr = 0;
    bpf_probe_read_kernel(&nr, sizeof(nr), fb + OFF_FBATCH_NR);
    for (int i = 0; i < CT_FBATCH_MAX; i++) {
        if (i >= nr)
            break;
        const void *f = NULL;
        bpf_probe_read_kernel(&f, sizeof(f), fb + OFF_FBATCH_FOLIOS + i * sizeof(void *));
        u64 memcg = ct_folio_memcg(f);
        if (ct_memcg_ok(memcg))
            ct_emit_folio(ctx, CT_KIND_uncharge, CT_KP_UNCHARGE_FOLIOS, f, memcg);
    }
    return 0;
}
#endif

/* ---- transfer / replace: old's memcg at entry, new's at return ---------- */
#if defined(CT_KP_TRANSFER) || defined(CT_KP_REPLACE)
static __always_inline void ct_pair_entry(struct pt_regs *ctx, struct ct_stash *s)
{
    s->a = PT_REGS_PARM1(ctx);
    s->b = PT_REGS_PARM2(ctx);
    s->c = ct_folio_memcg((const void *)s->a);
}

static __always_inline void ct_pair_return(struct pt_regs *ctx, struct ct_stash *s, u16 kind,
                                           u16 probe)
{
    struct ct_event e = {};
    e.folio = s->a;
    e.folio_new = s->b;
    e.memcg = s->c;
    e.memcg_new = ct_folio_memcg((const void *)e.folio_new);
    if (!ct_memcg_ok(e.memcg) && !ct_memcg_ok(e.memcg_new))
        return;
    ct_fill(&e, kind, probe);
    e.nr_pages = ct_folio_nr((const void *)e.folio_new);
    CT_EMIT(ctx, &e);
}
#endif

#if defined(CT_KP_TRANSFER) || defined(CT_KP_REPLACE)
/* One stash for both: the two never nest on one thread. */
BPF_HASH(stash_pair, u64, struct ct_stash, 4096);

static __always_inline int ct_pair_enter(struct pt_regs *ctx)
{
    u64 key = bpf_get_current_pid_tgid();
    struct ct_stash s = {};
    ct_pair_entry(ctx, &s);
    stash_pair.update(&key, &s);
    return 0;
}

static __always_inline int ct_pair_leave(struct pt_regs *ctx, u16 kind, u16 probe)
{
    u64 key = bpf_get_current_pid_tgid();
    struct ct_stash *p = stash_pair.lookup(&key);
    if (!p)
        return 0;
    struct ct_stash s = *p;
    stash_pair.delete(&key);
    ct_pair_return(ctx, &s, kind, probe);
    return 0;
}
#endif

#ifdef CT_KP_TRANSFER
/* mem_cgroup_migrate(old, new): force-charge <= 6.6, transfer >= 6.7
 * (85ce2c517ade "memcontrol: only transfer the memcg data for migration"). */
int ct_kp_transfer(struct pt_regs *ctx) { CT_GATE(); return ct_pair_enter(ctx); }
int ct_kret_transfer(struct pt_regs *ctx) { CT_GATE(); return ct_pair_leave(ctx, CT_KIND_transfer, CT_KP_TRANSFER); }
#endif

#ifdef CT_KP_REPLACE
/* mem_cgroup_replace_folio(old, new), 6.7+ (same commit): force-charges new. */
int ct_kp_replace(struct pt_regs *ctx) { CT_GATE(); return ct_pair_enter(ctx); }
int ct_kret_replace(struct pt_regs *ctx) { CT_GATE(); return ct_pair_leave(ctx, CT_KIND_replace, CT_KP_REPLACE); }
#endif

/* ---- split: a large folio's charge copied to its new folios ------------- */
#ifdef CT_KP_SPLIT
/* split_page_memcg(head, nr) (order-0 pieces), or (head, old_order, new_order)
 * from ≈6.10: read at entry, while head is still the large folio. */
int ct_kp_split(struct pt_regs *ctx)
{
    CT_GATE();
    const void *head = (const void *)PT_REGS_PARM1(ctx);
    u64 memcg = ct_folio_memcg(head);
    if (!ct_memcg_ok(memcg))
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_split, CT_KP_SPLIT);
    e.folio = (u64)head;
    e.nr_pages = ct_folio_nr(head);
    e.memcg = memcg;
#ifdef CT_SPLIT_HAS_ORDERS
    e.value = 1L << (PT_REGS_PARM3(ctx) & 0x3f);
#else
    e.value = 1;
#endif
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#ifdef CT_KP_SPLIT_REFS
/* folio_split_memcg_refs(folio, old_order, new_order): "mm: separate
 * folio_split_memcg_refs() from split_page_memcg()" (Matthew Wilcox, v6.15).
 * __split_unmapped_folio() (mm/huge_memory.c) calls it once per split step,
 * before the pieces exist, for every folio split: anon THP, page cache, and
 * device-private THP (d245f9b4ab80, 6.19; the driver's ->folio_split then
 * follows per piece). memcg_data is copied to the pieces without a charge. A
 * non-uniform split calls it again for the piece holding split_at. */
int ct_kp_split_refs(struct pt_regs *ctx)
{
    CT_GATE();
    const void *folio = (const void *)PT_REGS_PARM1(ctx);
    u64 memcg = ct_folio_memcg(folio);
    if (!ct_memcg_ok(memcg))
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_split, CT_KP_SPLIT_REFS);
    e.folio = (u64)folio;
    e.nr_pages = 1U << (PT_REGS_PARM2(ctx) & 31);
    e.memcg = memcg;
    e.value = 1L << (PT_REGS_PARM3(ctx) & 31);
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

/* ---- device_free --------------------------------------------------------- */
#ifdef CT_KP_DEVICE_FREE
/* free_zone_device_folio(folio) 6.10+, free_zone_device_page(page) 5.18-6.9,
 * free_devmap_managed_page(page) <= 5.17 (27674ef6c73f "mm: remove the
 * extra ZONE_DEVICE struct page refcount", v5.18). value = the
 * refcount at entry: 0 in the >= 5.18 convention, 1 before. */
int ct_kp_device_free(struct pt_regs *ctx)
{
    CT_GATE();
    ct_emit_device_free(ctx, CT_KP_DEVICE_FREE, (const void *)PT_REGS_PARM1(ctx));
    return 0;
}
#endif

/* ---- migrate_vma / migrate_device --------------------------------------- */
#define MIGRATE_PFN_VALID 1UL
#define MIGRATE_PFN_MIGRATE 2UL
/* Entries of src[] inspected at return; larger calls report value = -1. */
#define CT_SRC_MAX 4096
#define CT_SRC_CHUNK 8

/* Count src[] entries with VALID|MIGRATE both set (a source folio that is
 * still migrating = one charge transfer expected). -1 if too long. */
static __always_inline s64 ct_count_migrating(const unsigned long *src, u64 npages)
{
    if (npages > CT_SRC_MAX)
        return -1;
    s64 n = 0;
    for (int c = 0; c < CT_SRC_MAX / CT_SRC_CHUNK; c++) {
        if ((u64)c * CT_SRC_CHUNK >= npages)
            break;
        unsigned long buf[CT_SRC_CHUNK] = {};
        bpf_probe_read_kernel(buf, sizeof(buf), src + c * CT_SRC_CHUNK);
#pragma unroll
        for (int j = 0; j < CT_SRC_CHUNK; j++) {
            if ((u64)(c * CT_SRC_CHUNK + j) < npages &&
                (buf[j] & (MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE)) ==
                    (MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE))
                n++;
        }
    }
    return n;
}

static __always_inline int ct_mvma_emit(struct pt_regs *ctx, u16 kind, u16 probe, s32 item,
                                        u64 start, u64 npages, s64 value, s64 ret)
{
    struct ct_event e = {};
    ct_fill(&e, kind, probe);
    e.item = item;
    e.addr = start;
    e.nr_pages = npages;
    e.value = value;
    e.ret = ret;
    CT_EMIT(ctx, &e);
    return 0;
}

/* item: 0 = migrate_vma_*, 1 = migrate_device_* (named in Python). */
#if defined(CT_KP_MVMA_SETUP) || defined(CT_KP_MVMA_PAGES) || defined(CT_KP_MDEV_RANGE) || defined(CT_KP_MDEV_PAGES)
BPF_HASH(stash_mvma, u64, struct ct_stash, 4096);
static __always_inline void ct_mvma_stash(struct pt_regs *ctx)
{
    u64 key = bpf_get_current_pid_tgid();
    struct ct_stash s = {};
    s.a = PT_REGS_PARM1(ctx);
    s.b = PT_REGS_PARM2(ctx);
    s.c = PT_REGS_PARM3(ctx);
    stash_mvma.update(&key, &s);
}

/* The entry arguments stashed for this thread's call, removed; 0 if none
 * (the call began before the recording). */
static __always_inline int ct_mvma_take(struct ct_stash *out)
{
    u64 key = bpf_get_current_pid_tgid();
    struct ct_stash *s = stash_mvma.lookup(&key);
    if (!s)
        return 0;
    *out = *s;
    stash_mvma.delete(&key);
    return 1;
}
#endif

#ifdef CT_KP_MVMA_SETUP
/* migrate_vma_setup(struct migrate_vma *args) 5.4+ */
int ct_kp_mvma_setup(struct pt_regs *ctx) { CT_GATE(); ct_mvma_stash(ctx); return 0; }
int ct_kret_mvma_setup(struct pt_regs *ctx)
{
    CT_GATE();
    struct ct_stash s;
    if (!ct_mvma_take(&s))
        return 0;
    const char *mv = (const char *)s.a;
    unsigned long start = 0, npages = 0, cpages = 0;
    bpf_probe_read_kernel(&start, sizeof(start), mv + OFF_MVMA_START);
    bpf_probe_read_kernel(&npages, sizeof(npages), mv + OFF_MVMA_NPAGES);
    bpf_probe_read_kernel(&cpages, sizeof(cpages), mv + OFF_MVMA_CPAGES);
    /* int migrate_vma_setup(): sign-extend (see the charge section). */
    return ct_mvma_emit(ctx, CT_KIND_migrate_setup, CT_KP_MVMA_SETUP, 0, start, npages, cpages,
                        (int)PT_REGS_RC(ctx));
}
#endif

#ifdef CT_KP_MVMA_PAGES
/* migrate_vma_pages(struct migrate_vma *migrate): src[] read at return */
int ct_kp_mvma_pages(struct pt_regs *ctx) { CT_GATE(); ct_mvma_stash(ctx); return 0; }
int ct_kret_mvma_pages(struct pt_regs *ctx)
{
    CT_GATE();
    struct ct_stash s;
    if (!ct_mvma_take(&s))
        return 0;
    const char *mv = (const char *)s.a;
    const unsigned long *src = NULL;
    unsigned long npages = 0;
    bpf_probe_read_kernel(&src, sizeof(src), mv + OFF_MVMA_SRC);
    bpf_probe_read_kernel(&npages, sizeof(npages), mv + OFF_MVMA_NPAGES);
    return ct_mvma_emit(ctx, CT_KIND_migrate_pages, CT_KP_MVMA_PAGES, 0, 0, npages,
                        ct_count_migrating(src, npages), 0);
}
#endif

#ifdef CT_KP_MVMA_FINALIZE
/* migrate_vma_finalize(struct migrate_vma *migrate) */
int ct_kp_mvma_finalize(struct pt_regs *ctx)
{
    CT_GATE();
    const char *mv = (const char *)PT_REGS_PARM1(ctx);
    unsigned long npages = 0;
    bpf_probe_read_kernel(&npages, sizeof(npages), mv + OFF_MVMA_NPAGES);
    return ct_mvma_emit(ctx, CT_KIND_migrate_finalize, CT_KP_MVMA_FINALIZE, 0, 0, npages, 0, 0);
}
#endif

#ifdef CT_KP_MDEV_RANGE
/* migrate_device_range(unsigned long *src_pfns, unsigned long start, unsigned
 * long npages), 6.1+ (e778406b40db): addr = first pfn, value = -1 (the
 * function returns int and fills src_pfns; counted at migrate_device_pages). */
int ct_kp_mdev_range(struct pt_regs *ctx) { CT_GATE(); ct_mvma_stash(ctx); return 0; }
int ct_kret_mdev_range(struct pt_regs *ctx)
{
    CT_GATE();
    struct ct_stash s;
    if (!ct_mvma_take(&s))
        return 0;
    u64 start = s.b, npages = s.c;
    return ct_mvma_emit(ctx, CT_KIND_migrate_setup, CT_KP_MDEV_RANGE, 1, start, npages, -1,
                        (int)PT_REGS_RC(ctx));
}
#endif

#ifdef CT_KP_MDEV_PAGES
/* migrate_device_pages(unsigned long *src_pfns, unsigned long *dst_pfns,
 * unsigned long npages), 6.1+ */
int ct_kp_mdev_pages(struct pt_regs *ctx) { CT_GATE(); ct_mvma_stash(ctx); return 0; }
int ct_kret_mdev_pages(struct pt_regs *ctx)
{
    CT_GATE();
    struct ct_stash s;
    if (!ct_mvma_take(&s))
        return 0;
    const unsigned long *src = (const unsigned long *)s.a;
    u64 npages = s.c;
    return ct_mvma_emit(ctx, CT_KIND_migrate_pages, CT_KP_MDEV_PAGES, 1, 0, npages,
                        ct_count_migrating(src, npages), 0);
}
#endif

#ifdef CT_KP_MDEV_FINALIZE
/* migrate_device_finalize(src_pfns, dst_pfns, npages), 6.1+ */
int ct_kp_mdev_finalize(struct pt_regs *ctx)
{
    CT_GATE();
    return ct_mvma_emit(ctx, CT_KIND_migrate_finalize, CT_KP_MDEV_FINALIZE, 1, 0,
                        PT_REGS_PARM3(ctx), 0, 0);
}
#endif

/* ---- device_fault: a driver's migrate_to_ram callback --------------------- */
#ifdef CT_KP_DEVICE_FAULT
/* dev_pagemap_ops.migrate_to_ram(struct vm_fault *vmf) of a driver:
 * dmirror_devmem_fault (lib/test_hmm.c), nouveau_dmem_migrate_to_ram,
 * svm_migrate_to_ram (amdkfd). do_swap_page() calls it only in its
 * is_device_private_entry() branch (mm/memory.c), so every call is a fault
 * on a device-private entry. do_swap_page itself is not used: it also runs
 * for every ordinary swap-in. addr = vmf->address; pgmap_ops = the ops of
 * vmf->page's pgmap (do_swap_page() sets vmf->page to the device page before
 * calling page_pgmap(vmf->page)->ops->migrate_to_ram(vmf)), kept in the stash
 * for the return row. */
BPF_HASH(stash_dfault, u64, u64, 4096);
int ct_kp_device_fault(struct pt_regs *ctx)
{
    CT_GATE();
    if (!ct_task_ok())
        return 0;
    const char *vmf = (const char *)PT_REGS_PARM1(ctx);
    u64 key = bpf_get_current_pid_tgid();
    u64 ops = 0;
#if defined(OFF_VMF_PAGE) && defined(CT_PGMAP_READS)
    const void *page = NULL;
    bpf_probe_read_kernel(&page, sizeof(page), vmf + OFF_VMF_PAGE);
    ops = ct_pgmap_ops(page);
#endif
    stash_dfault.update(&key, &ops);
    unsigned long addr = 0;
    bpf_probe_read_kernel(&addr, sizeof(addr), vmf + OFF_VMF_ADDRESS);
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_device_fault, CT_KP_DEVICE_FAULT);
    e.addr = addr;
    e.pgmap_ops = ops;
    CT_EMIT(ctx, &e);
    return 0;
}
int ct_kret_device_fault(struct pt_regs *ctx)
{
    CT_GATE();
    u64 key = bpf_get_current_pid_tgid();
    u64 *ops = stash_dfault.lookup(&key);
    if (!ops)
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_device_fault_done, CT_KP_DEVICE_FAULT);
    e.ret = (u32)PT_REGS_RC(ctx); /* vm_fault_t is an unsigned int */
    e.pgmap_ops = *ops;
    stash_dfault.delete(&key);
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

/* ---- fault fallback: handle_mm_fault(vma, address, flags, regs) --------- */
/* value = the equivalent x86 error code (ct_fault_code); user faults only. */
#ifdef CT_KP_FAULT
int ct_kp_fault(struct pt_regs *ctx)
{
    CT_GATE();
    s64 code = ct_fault_code(PT_REGS_PARM3(ctx));
    if (code < 0 || !ct_task_ok())
        return 0;
    ct_count_fault();
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_fault, CT_KP_FAULT);
    e.addr = PT_REGS_PARM2(ctx);
    e.value = code;
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#endif /* OFF_FOLIO_MEMCG_DATA */

/* ==== fentry / fexit variants ========================================== */
/* fentry/fexit variants (BPF_PROG_TYPE_TRACING): cheaper than kprobes and
 * give the return value and the arguments together at fexit. Each program
 * is bound to one BTF function, so the symbol is part of the source; only
 * the 6.9+ names are offered (older eras fall back to kprobes, whose symbol
 * is chosen at attach time). Args are declared as void * because the stub
 * headers have no struct definitions. */

#ifdef OFF_FOLIO_MEMCG_DATA

#ifdef CT_FE_FAULT
KFUNC_PROBE(handle_mm_fault, void *vma, unsigned long address, unsigned int flags)
{
    CT_GATE();
    s64 code = ct_fault_code(flags);
    if (code < 0 || !ct_task_ok())
        return 0;
    ct_count_fault();
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_fault, CT_FE_FAULT);
    e.addr = address;
    e.value = code;
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#ifdef CT_FE_CHARGE
KRETFUNC_PROBE(__mem_cgroup_charge, void *folio, void *mm, unsigned int gfp, int ret)
{
    CT_GATE();
    ct_emit_charge(ctx, CT_FE_CHARGE, folio, ret);
    return 0;
}
#endif

#ifdef CT_FE_UNCHARGE
KFUNC_PROBE(__mem_cgroup_uncharge, void *folio)
{
    CT_GATE();
    u64 memcg = ct_folio_memcg(folio);
    if (ct_memcg_ok(memcg))
        ct_emit_folio(ctx, CT_KIND_uncharge, CT_FE_UNCHARGE, folio, memcg);
    return 0;
}
#endif

#ifdef CT_FE_TRANSFER
/* old's memcg must be read at entry: a >= 6.7 transfer clears it. */
BPF_HASH(fe_transfer_old, u64, u64, 4096);
KFUNC_PROBE(mem_cgroup_migrate, void *old, void *new)
{
    CT_GATE();
    u64 key = bpf_get_current_pid_tgid();
    u64 memcg = ct_folio_memcg(old);
    fe_transfer_old.update(&key, &memcg);
    return 0;
}
KRETFUNC_PROBE(mem_cgroup_migrate, void *old, void *new)
{
    CT_GATE();
    u64 key = bpf_get_current_pid_tgid();
    u64 *old_memcg = fe_transfer_old.lookup(&key);
    if (!old_memcg)
        return 0;
    struct ct_event e = {};
    e.memcg = *old_memcg;
    fe_transfer_old.delete(&key);
    e.memcg_new = ct_folio_memcg(new);
    if (!ct_memcg_ok(e.memcg) && !ct_memcg_ok(e.memcg_new))
        return 0;
    ct_fill(&e, CT_KIND_transfer, CT_FE_TRANSFER);
    e.folio = (u64)old;
    e.folio_new = (u64)new;
    e.nr_pages = ct_folio_nr(new);
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#ifdef CT_FE_DEVICE_FREE
KFUNC_PROBE(free_zone_device_folio, void *folio)
{
    CT_GATE();
    ct_emit_device_free(ctx, CT_FE_DEVICE_FREE, folio);
    return 0;
}
#endif

#endif /* OFF_FOLIO_MEMCG_DATA */

/* ==== lru_insert: raw_tp mm_lru_insertion (R12) ========================
 * TP_PROTO(struct folio *folio) since 5.16 ("mm: Add folio_add_lru()").
 * An uncharged folio (memcg_data 0) going on an LRU is a kernel bug while
 * memcg is on: 41cddf83d8b0 "mm/migrate_device: don't add folio to be freed
 * to LRU in migrate_device_finalize()". Such rows are kept whatever task
 * drains the per-CPU LRU batch (lru_add_fn() runs in whoever drains it), so
 * they are not lost to the scope filter; they are rare by construction.
 * A raw tracepoint: the tracepoint's generated args struct has an
 * "enum lru_list" field BCC cannot complete without kernel headers. */
#if defined(CT_RAW_LRU) && defined(OFF_FOLIO_MEMCG_DATA)
RAW_TRACEPOINT_PROBE(mm_lru_insertion)
{
    CT_GATE();
    const void *folio = (const void *)ctx->args[0];
    u64 memcg = ct_folio_memcg(folio);
    if (memcg != 0 && !ct_memcg_ok(memcg))
        return 0;
    ct_emit_folio_row(ctx, CT_KIND_lru_insert, CT_RAW_LRU, folio, memcg, 0, 0);
    return 0;
}
#endif
