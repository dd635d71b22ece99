/* The recorder's one BPF program: the shared part plus every variant the
 * catalogue enabled with -D flags. Trial attaches compile this same file
 * with a single variant enabled. */
#include "common.h"
#include "tracepoints.c"
#include "kprobes.c"
#include "fentry.c"
