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
    if (!ct_task_ok())
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_fault, CT_FE_FAULT);
    e.addr = address;
    e.value = flags;
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#ifdef CT_FE_CHARGE
KRETFUNC_PROBE(__mem_cgroup_charge, void *folio, void *mm, unsigned int gfp, int ret)
{
    u64 memcg = ct_folio_memcg(folio);
    if (!ct_memcg_ok(memcg) && !(ret != 0 && ct_task_ok()))
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_charge, CT_FE_CHARGE);
    e.folio = (u64)folio;
    e.nr_pages = ct_folio_nr(folio);
    e.memcg = ret == 0 ? memcg : 0;
    e.ret = ret;
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#ifdef CT_FE_UNCHARGE
KFUNC_PROBE(__mem_cgroup_uncharge, void *folio)
{
    u64 memcg = ct_folio_memcg(folio);
    if (!ct_memcg_ok(memcg))
        return 0;
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_uncharge, CT_FE_UNCHARGE);
    e.folio = (u64)folio;
    e.nr_pages = ct_folio_nr(folio);
    e.memcg = memcg;
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#ifdef CT_FE_TRANSFER
/* old's memcg must be read at entry: a >= 6.7 transfer clears it. */
BPF_HASH(fe_transfer_old, u64, u64, 4096);
KFUNC_PROBE(mem_cgroup_migrate, void *old, void *new)
{
    u64 key = bpf_get_current_pid_tgid();
    u64 memcg = ct_folio_memcg(old);
    fe_transfer_old.update(&key, &memcg);
    return 0;
}
KRETFUNC_PROBE(mem_cgroup_migrate, void *old, void *new)
{
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
    u64 memcg = ct_folio_memcg(folio);
    if (!ct_memcg_ok(memcg) && !ct_task_ok())
        return 0;
    int refs = -1;
    bpf_probe_read_kernel(&refs, sizeof(refs), (const char *)folio + OFF_PAGE_REFCOUNT);
    struct ct_event e = {};
    ct_fill(&e, CT_KIND_device_free, CT_FE_DEVICE_FREE);
    e.folio = (u64)folio;
    e.nr_pages = ct_folio_nr(folio);
    e.memcg = memcg;
    e.value = refs;
    CT_EMIT(ctx, &e);
    return 0;
}
#endif

#endif /* OFF_FOLIO_MEMCG_DATA */
