/* Deterministic fault workload for the live recorder tests and benchmark.
 *
 * usage: workload NPAGES [ROUNDS]
 * Reports (on stdout, before touching): its pid, the inode of its memory
 * cgroup directory (= memcg id), and the address range it will write. Then
 * maps NPAGES anonymous pages with MADV_NOHUGEPAGE (one 4 KiB folio per
 * fault, so one charge each), writes one byte per page, unmaps, repeats
 * ROUNDS times (default 1), prints the loop's duration, exits. No malloc
 * after the report.
 *
 * It first re-executes itself with ADDR_NO_RANDOMIZE: with ASLR the heap and
 * stack straddle page boundaries differently from run to run, which changes
 * the number of pages its startup charges by one or two. Without ASLR its
 * own startup charges are the same in every run (the recorder's trampoline
 * shell, which runs before it, is still randomized).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static unsigned long memcg_ino(void)
{
    char line[4096], path[4200];
    FILE *f = fopen("/proc/self/cgroup", "r");
    unsigned long ino = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        char *ctl = strchr(line, ':');
        char *rel = ctl ? strchr(ctl + 1, ':') : NULL;
        if (!rel)
            continue;
        *rel++ = '\0';
        rel[strcspn(rel, "\n")] = '\0';
        if (strstr(ctl + 1, "memory"))
            snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s", rel);
        else if (line[0] == '0' && ctl[1] == '\0')
            snprintf(path, sizeof(path), "/sys/fs/cgroup%s", rel);
        else
            continue;
        struct stat st;
        if (stat(path, &st) == 0)
            ino = st.st_ino;
        if (strstr(ctl + 1, "memory"))
            break;
    }
    fclose(f);
    return ino;
}

int main(int argc, char **argv)
{
    int pers = personality(0xffffffff);
    if (pers != -1 && !(pers & ADDR_NO_RANDOMIZE) && !getenv("WORKLOAD_ASLR")) {
        char self[4096];
        ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (len > 0 && personality(pers | ADDR_NO_RANDOMIZE) != -1) {
            self[len] = '\0';
            execv(self, argv); /* by its own name, so comm stays "workload" */
        }
    }
    long n = argc > 1 ? atol(argv[1]) : 0;
    long rounds = argc > 2 ? atol(argv[2]) : 1;
    long page = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)(n > 0 ? n : 1) * page;
    char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    printf("pid=%d memcg=%lu start=%#lx end=%#lx\n", getpid(), memcg_ino(), (unsigned long)buf,
           (unsigned long)buf + (unsigned long)n * page);
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long r = 0; r < rounds; r++) {
        if (r > 0) {
            buf = mmap(buf, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (buf == MAP_FAILED) {
                perror("mmap");
                return 1;
            }
        }
        madvise(buf, len, MADV_NOHUGEPAGE);
        for (long i = 0; i < n; i++)
            buf[i * page] = 1;
        munmap(buf, len);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Duration of the touch loop (for bench/record_overhead.py). */
    printf("elapsed_ns=%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
    return 0;
}
