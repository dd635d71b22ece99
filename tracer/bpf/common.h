/* chargetrace recorder: event record, transport, scope filter, folio reads.
 *
 * Compiled by BCC with -D flags chosen in Python (tracer/catalogue.py):
 *   CT_PERF          use a perf buffer instead of the BPF ring buffer
 *   CT_RB_PAGES      ring-buffer size in pages (power of two)
 *   CT_SCOPE_ALL     no scope filter (system-wide recording)
 *   OFF_*            byte offsets of kernel struct members (from BTF, or
 *                    offsetof() below when real kernel headers are used)
 *   CT_MEMCG_DATA_OBJCG  folio->memcg_data points to an obj_cgroup (7.2)
 * Each probe variant is enabled by a define whose value is its probe id
 * (the row's `probe` string is looked up in Python from that id).
 *
 * This header holds no map code: BCC rewrites map calls (events.ringbuf_output,
 * x.lookup) only in the main file, so maps and everything using them live in
 * recorder.c.
 *
 * Kernel structs are only read by offset (bpf_probe_read_kernel), never by
 * name: against the BTF-generated stub headers no struct layout exists, and
 * against real headers of another build the layout may be skewed.
 */
#ifndef CT_COMMON_H
#define CT_COMMON_H

#include <uapi/linux/ptrace.h>
/* Declares enum migrate_mode, named by the migrate:* format files. */
#include <linux/migrate_mode.h>

#ifdef CT_REAL_HEADERS
#include <linux/mm_types.h>
#include <linux/memcontrol.h>
#include <linux/cgroup-defs.h>
#include <linux/kernfs.h>
#include <linux/migrate.h>
/* struct folio_batch: linux/pagevec.h, renamed linux/folio_batch.h in Debian's 7.2. */
#if __has_include(<linux/folio_batch.h>)
#include <linux/folio_batch.h>
#else
#include <linux/pagevec.h>
#endif
#include <linux/memremap.h>
#ifndef OFF_FOLIO_MEMCG_DATA
/* Which struct holds the memcg word, found in the headers themselves (never by
 * version number): folio_page() comes with struct folio (7b230db3b8d3 "mm:
 * Introduce struct folio", 5.16); MEMCG_DATA_FLAGS_MASK with page->memcg_data
 * (87944e2992bd "mm: Introduce page memcg flags", 5.11); before that the word
 * is page->mem_cgroup. A folio is its head page, so on page-era kernels the
 * "folio" the probes read is the struct page * the memcg API takes. */
#if defined(folio_page)
#define OFF_FOLIO_MEMCG_DATA offsetof(struct folio, memcg_data)
#define OFF_FOLIO_LRU offsetof(struct folio, lru)
#elif defined(MEMCG_DATA_FLAGS_MASK)
#define CT_PAGE_ERA 1
#define OFF_FOLIO_MEMCG_DATA offsetof(struct page, memcg_data)
#define OFF_FOLIO_LRU offsetof(struct page, lru)
#else
#define CT_PAGE_ERA 1
#define OFF_FOLIO_MEMCG_DATA offsetof(struct page, mem_cgroup)
#define OFF_FOLIO_LRU offsetof(struct page, lru)
#endif
#define OFF_PAGE_REFCOUNT offsetof(struct page, _refcount)
#define OFF_MEMCG_CSS offsetof(struct mem_cgroup, css)
#define OFF_CSS_CGROUP offsetof(struct cgroup_subsys_state, cgroup)
#define OFF_CGROUP_KN offsetof(struct cgroup, kn)
#define OFF_KN_ID offsetof(struct kernfs_node, id)
#define OFF_FBATCH_NR offsetof(struct folio_batch, nr)
#define OFF_FBATCH_FOLIOS offsetof(struct folio_batch, folios)
#define OFF_MVMA_SRC offsetof(struct migrate_vma, src)
#define OFF_MVMA_START offsetof(struct migrate_vma, start)
#define OFF_MVMA_NPAGES offsetof(struct migrate_vma, npages)
#define OFF_MVMA_CPAGES offsetof(struct migrate_vma, cpages)
#define OFF_VMF_ADDRESS offsetof(struct vm_fault, address)
#define OFF_PAGE_FLAGS offsetof(struct page, flags)
#define CT_PG_HEAD PG_head
/* The pgmap of a ZONE_DEVICE page is the word after flags in every era:
 * page->pgmap (first word of the ZONE_DEVICE struct of the union, <= 6.x),
 * folio->pgmap (in the union with lru, 7.x; include/linux/mm_types.h). The
 * member moved, the offset did not, so it is named through page->lru. */
#define OFF_PAGE_PGMAP offsetof(struct page, lru)
#define OFF_PGMAP_OPS offsetof(struct dev_pagemap, ops)
#define OFF_VMF_PAGE offsetof(struct vm_fault, page)
#define OFF_OBJCG_MEMCG offsetof(struct obj_cgroup, memcg)
/* Folio order byte: the first tail page's compound_order before struct folio
 * (read as page[1], the byte folio->_folio_order later overlays),
 * folio->_folio_order until "mm: reimplement folio_order() and
 * folio_nr_pages()" (v6.6), then the low byte of folio->_flags_1. */
#if defined(CT_PAGE_ERA)
#define OFF_FOLIO_ORDER (sizeof(struct page) + offsetof(struct page, compound_order))
#elif LINUX_VERSION_CODE < KERNEL_VERSION(6, 6, 0)
#define OFF_FOLIO_ORDER offsetof(struct folio, _folio_order)
#else
#define OFF_FOLIO_ORDER offsetof(struct folio, _flags_1)
#endif
#endif
#endif

/* Kinds: keep in sync with KIND_CODES, which tracer/decode.py parses from
 * this header (so the numbers have a single source). */
#define CT_KIND_fault 1
#define CT_KIND_device_fault 2
#define CT_KIND_device_fault_done 3
#define CT_KIND_migrate_setup 4
#define CT_KIND_migrate_pages 5
#define CT_KIND_migrate_finalize 6
#define CT_KIND_page_migration 7
#define CT_KIND_charge 8
#define CT_KIND_uncharge 9
#define CT_KIND_transfer 10
#define CT_KIND_replace 11
#define CT_KIND_device_free 12
#define CT_KIND_memcg_stat 13
#define CT_KIND_fork 14
#define CT_KIND_exit 15
#define CT_KIND_split 16
/* Kept apart from the numbers above so parallel additions do not collide. */
#define CT_KIND_lru_insert 32

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

struct ct_event {
    u64 ts_ns;
    u64 folio;
    u64 folio_new;
    u64 memcg;
    u64 memcg_new;
    u64 addr;
    s64 ret;
    s64 value;
    u64 pgmap_ops;
    u32 pid;
    u32 tid;
    u32 cpu;
    u32 nr_pages;
    u16 kind;
    u16 probe;
    s32 item;
    char comm[16];
};

/* handle_mm_fault() flags -> the x86 page-fault error code that
 * exceptions:page_fault_user reports (bit 1 write, bit 2 user, bit 4
 * instruction fetch), so `value` means the same whichever probe produced a
 * fault row. FAULT_FLAG_WRITE = 1 << 0, FAULT_FLAG_USER = 1 << 6,
 * FAULT_FLAG_INSTRUCTION = 1 << 8 (include/linux/mm_types.h, enum fault_flag
 * since v5.14; the same bits before as #defines). Returns -1 for a fault not
 * taken in user mode (GUP, copy_to_user), which the tracepoint never sees. */
static __always_inline s64 ct_fault_code(unsigned int flags)
{
    if (!(flags & (1U << 6)))
        return -1;
    return 4 | ((flags & 1U) ? 2 : 0) | ((flags & (1U << 8)) ? 16 : 0);
}

#ifdef OFF_FOLIO_MEMCG_DATA
/* cgroup id of a mem_cgroup: memcg->css.cgroup->kn->id (as cgroup_id() in
 * include/linux/cgroup.h reads it); equals the cgroup directory inode and the
 * memcg:* tracepoints' id field. */
static __always_inline u64 ct_memcg_id(const void *memcg)
{
    const void *cgrp = NULL, *kn = NULL;
    u64 id = 0;
    if (!memcg)
        return 0;
    bpf_probe_read_kernel(&cgrp, sizeof(cgrp), (const char *)memcg + OFF_MEMCG_CSS + OFF_CSS_CGROUP);
    if (!cgrp)
        return 0;
    bpf_probe_read_kernel(&kn, sizeof(kn), (const char *)cgrp + OFF_CGROUP_KN);
    if (!kn)
        return 0;
    bpf_probe_read_kernel(&id, sizeof(id), (const char *)kn + OFF_KN_ID);
    return id;
}

/* memcg of a folio: memcg_data with the low two flag bits masked. With the
 * KMEM bit (1 << 1) set it points to an obj_cgroup, not a mem_cgroup: those
 * are kernel objects, not user folios, so report "not charged". Bit 0 marks a
 * slab page's obj_cgroup vector (MEMCG_DATA_OBJCGS, later OBJEXTS; on 5.10
 * page->obj_cgroups | 0x1 shares the word with page->mem_cgroup): not a memcg
 * either, so it is "not charged" too rather than a pointer read as one. */
static __always_inline u64 ct_folio_memcg(const void *folio)
{
    unsigned long md = 0;
    if (!folio)
        return 0;
    bpf_probe_read_kernel(&md, sizeof(md), (const char *)folio + OFF_FOLIO_MEMCG_DATA);
    if (md & 3UL)
        return 0;
#if defined(CT_PAGE_ERA) && defined(PG_kmemcg)
    /* <= 5.10: a kernel page charged by __memcg_kmem_charge_page() holds the
     * memcg itself in page->mem_cgroup, marked only by the PageKmemcg page
     * type (18b2db3b0385 "mm: Convert page kmemcg type to a page memcg flag",
     * 5.11, moved the mark into bit 1 above). Such a page freed by put_page()
     * passes mem_cgroup_uncharge(), which uncharges it as kernel memory: it is
     * no user charge, like a MEMCG_DATA_KMEM folio later. */
    unsigned int ptype = 0;
    bpf_probe_read_kernel(&ptype, sizeof(ptype), (const char *)folio + offsetof(struct page, page_type));
    if ((ptype & (PAGE_TYPE_BASE | PG_kmemcg)) == PAGE_TYPE_BASE)
        return 0;
#endif
#ifdef CT_MEMCG_DATA_OBJCG
    /* "mm: memcontrol: eliminate the problem of dying memory cgroup for LRU
     * folios" (Muchun Song, Qi Zheng; in Debian's 7.2): memcg_data of every
     * charged folio points to an obj_cgroup, whose ->memcg is the memcg (the
     * parent's once the memcg died: reparenting swaps objcg->memcg). */
    const void *memcg = NULL;
    if (!md)
        return 0;
    bpf_probe_read_kernel(&memcg, sizeof(memcg), (const char *)(md & ~3UL) + OFF_OBJCG_MEMCG);
    return ct_memcg_id(memcg);
#else
    return ct_memcg_id((const void *)(md & ~3UL));
#endif
}

/* Pages in a folio: 1, or 1 << order for a large folio (PG_head set). The
 * order sits in the low byte of the second page's flags (folio->_flags_1,
 * "mm: reimplement folio_order() and folio_nr_pages()", v6.6) or, before,
 * in folio->_folio_order. OFF_FOLIO_ORDER names whichever byte BTF has. */
static __always_inline u32 ct_folio_nr(const void *folio)
{
#if defined(OFF_FOLIO_ORDER) && defined(CT_PG_HEAD) && defined(OFF_PAGE_FLAGS)
    unsigned long flags = 0;
    unsigned char order = 0;
    bpf_probe_read_kernel(&flags, sizeof(flags), (const char *)folio + OFF_PAGE_FLAGS);
    if (!(flags & (1UL << CT_PG_HEAD)))
        return 1;
    bpf_probe_read_kernel(&order, sizeof(order), (const char *)folio + OFF_FOLIO_ORDER);
    return 1U << (order & 31);
#else
    return 1;
#endif
}
#endif /* OFF_FOLIO_MEMCG_DATA */

#if defined(OFF_PAGE_PGMAP) && defined(OFF_PGMAP_OPS)
#define CT_PGMAP_READS 1
/* The driver's ops of a ZONE_DEVICE page: page_pgmap(page)->ops (struct
 * dev_pagemap_ops *, a static const in the driver: dmirror_devmem_ops,
 * nouveau_dmem_pagemap_ops, ...; named from /proc/kallsyms in Python).
 * Only for pages known to be ZONE_DEVICE (a device free, a driver's
 * migrate_to_ram): for any other page the word is lru.next.
 * A tail page's word at that offset is compound_head | 1 (<= 6.x) or, in
 * 7.x, compound_info: the head pointer | 1, or with HVO a mask | 1 that
 * turns the tail's address into the head's (include/linux/page-flags.h
 * _compound_head()); a mask is ones from some bit up to bit 63. */
static __always_inline u64 ct_pgmap_ops(const void *page)
{
    unsigned long word = 0;
    const void *pgmap = NULL;
    u64 ops = 0;
    if (!page)
        return 0;
    bpf_probe_read_kernel(&word, sizeof(word), (const char *)page + OFF_PAGE_PGMAP);
    if (word & 1UL) {
        unsigned long m = word & ~1UL;
        const char *head = ((m | (m - 1)) == ~0UL) ? (const char *)((unsigned long)page & m) : (const char *)m;
        word = 0;
        bpf_probe_read_kernel(&word, sizeof(word), head + OFF_PAGE_PGMAP);
    }
    pgmap = (const void *)word;
    if (!pgmap)
        return 0;
    bpf_probe_read_kernel(&ops, sizeof(ops), (const char *)pgmap + OFF_PGMAP_OPS);
    return ops;
}
#endif

#endif /* CT_COMMON_H */
