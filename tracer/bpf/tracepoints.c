/* Tracepoint and raw-tracepoint variants (tried first: stable, no kprobes).
 * Enabled one by one by tracer/catalogue.py; each define's value is the
 * variant's probe id. Raw tracepoints get their TP_PROTO arguments in
 * ctx->args[]; the argument counts that vary by kernel come from BTF
 * (btf_trace_<name> typedefs) as CT_RAW_*_NARGS. */

/* ---- fault: exceptions:page_fault_user (x86) ---------------------------- */
#ifdef CT_TP_FAULT
TRACEPOINT_PROBE(exceptions, page_fault_user)
{
    if (!ct_task_ok())
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_fault, CT_TP_FAULT);
    e.addr = args->address;
    e.value = args->error_code;
    CT_EMIT(args, &e);
    return 0;
}
#endif

#ifdef CT_RAW_FAULT
/* TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code) */
RAW_TRACEPOINT_PROBE(page_fault_user)
{
    if (!ct_task_ok())
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_fault, CT_RAW_FAULT);
    e.addr = ctx->args[0];
    e.value = ctx->args[2];
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

/* ---- page_migration: migrate:mm_migrate_pages ---------------------------- */
/* System-wide on purpose: compaction/NUMA run in kcompactd/kworker context
 * and are rare (hundreds per compaction run). */
#ifdef CT_TP_MIGRATE
TRACEPOINT_PROBE(migrate, mm_migrate_pages)
{
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_page_migration, CT_TP_MIGRATE);
    e.value = args->succeeded;
    e.ret = args->failed;
    e.item = args->reason;
    CT_EMIT(args, &e);
    return 0;
}
#endif

#ifdef CT_RAW_MIGRATE
/* TP_PROTO(succeeded, failed, thp_succeeded, thp_failed, thp_split,
 * [large_folio_split (v6.12),] mode, reason): reason is always last. */
RAW_TRACEPOINT_PROBE(mm_migrate_pages)
{
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_page_migration, CT_RAW_MIGRATE);
    e.value = ctx->args[0];
    e.ret = ctx->args[1];
    e.item = (int)ctx->args[CT_RAW_MIGRATE_NARGS - 1];
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

/* ---- memcg_stat: memcg:* counter tracepoints (v6.16+) -------------------- */
/* "memcg: add tracepoints for memcg stat updates" (v6.16). id is the cgroup
 * id; item is the numeric enum index, named in Python from BTF. */
#define CT_MEMCG_TP(name, define)                                               \
    TRACEPOINT_PROBE(memcg, name)                                               \
    {                                                                           \
        if (!ct_memcg_ok(args->id))                                             \
            return 0;                                                           \
        struct ct_event e = {};                                                 \
        ct_fill(&e, CT_KIND_memcg_stat, define);                                \
        e.memcg = args->id;                                                     \
        e.item = args->item;                                                    \
        e.value = (s64)args->val;                                               \
        CT_EMIT(args, &e);                                                      \
        return 0;                                                               \
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
        u64 id = ct_memcg_id((const void *)ctx->args[0]);                       \
        if (!ct_memcg_ok(id))                                                   \
            return 0;                                                           \
        struct ct_event e = {};                                                 \
        ct_fill(&e, CT_KIND_memcg_stat, define);                                \
        e.memcg = id;                                                           \
        e.item = (int)ctx->args[1];                                             \
        e.value = (s64)(valtype)ctx->args[2];                                   \
        CT_EMIT(ctx, &e);                                                       \
        return 0;                                                               \
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
#endif
}

#ifdef CT_TP_FORK
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    /* current is the forking task; parent_pid would be its tid. */
    if (!ct_task_ok())
        return 0;
    u32 child = args->child_pid;
    ct_scope_add_child(child);
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_fork, CT_TP_FORK);
    e.value = child;
    CT_EMIT(args, &e);
    return 0;
}
#endif

#if defined(CT_RAW_FORK) && defined(OFF_TASK_PID)
/* TP_PROTO(struct task_struct *parent, struct task_struct *child) */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    if (!ct_task_ok())
        return 0;
    u32 child = 0;
    bpf_probe_read_kernel(&child, sizeof(child), (const char *)ctx->args[1] + OFF_TASK_PID);
    ct_scope_add_child(child);
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_fork, CT_RAW_FORK);
    e.value = child;
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#ifdef CT_TP_EXIT
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    if (!ct_task_ok())
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_exit, CT_TP_EXIT);
#ifdef CT_EXIT_HAS_GROUP_DEAD
    /* group_dead is feature-detected from the format file (present on 6.18). */
    e.value = args->group_dead ? 1 : 0;
#else
    /* Older kernels: the leader's exit approximates the group's end. */
    e.value = e.pid == e.tid;
#endif
    CT_EMIT(args, &e);
    return 0;
}
#endif

#ifdef CT_RAW_EXIT
/* TP_PROTO(struct task_struct *p[, bool group_dead]); count from BTF */
RAW_TRACEPOINT_PROBE(sched_process_exit)
{
    if (!ct_task_ok())
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_exit, CT_RAW_EXIT);
#if defined(CT_RAW_EXIT_NARGS) && CT_RAW_EXIT_NARGS >= 2
    e.value = ctx->args[1] ? 1 : 0;
#else
    e.value = e.pid == e.tid;
#endif
    CT_EMIT(ctx, &e);
    return 0;
}
#endif
