/* Test program for the recorder's folio readers (tracer/bpf/common.h):
 * on pagemap:mm_lru_insertion (raw tracepoint: it hands over the struct
 * folio *), read the folio's memcg id and size exactly as the folio kprobes
 * do, and count folios and pages per memcg id. Lets a kernel without
 * kprobes/fentry check ct_folio_memcg()/ct_folio_nr() live. */
#include "common.h"

BPF_HASH(folios, u64, u64, 4096);
BPF_HASH(pages, u64, u64, 4096);

RAW_TRACEPOINT_PROBE(mm_lru_insertion)
{
    const void *folio = (const void *)ctx->args[0];
    u64 id = ct_folio_memcg(folio);
    u64 zero = 0;
    u64 *n = folios.lookup_or_try_init(&id, &zero);
    if (n)
        __sync_fetch_and_add(n, 1);
    u64 *p = pages.lookup_or_try_init(&id, &zero);
    if (p)
        __sync_fetch_and_add(p, ct_folio_nr(folio));
    return 0;
}
