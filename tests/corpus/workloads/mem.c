/* The corpus's memory workloads: one small program, one mode per kind of
 * memory a memory cgroup can hold (tests/corpus/cases.py says which case runs
 * which mode and what the kernel must account for it).
 *
 * usage: mem MODE ARGS...
 *   anon PAGES             anonymous, MADV_NOHUGEPAGE: one order-0 folio per page
 *   thp MIB [split]        anonymous, 2 MiB-aligned, MADV_HUGEPAGE: PMD-mapped THPs;
 *                          "split" then unmaps the first 4 KiB of each, which
 *                          splits the PMD and queues the folio for a deferred split
 *   file PATH MIB keep|delete   write MIB to PATH with write(2), read it back,
 *                          keep the file (after fsync: clean page cache, which reclaim
 *                          can drop) or unlink it (page cache, or shmem on tmpfs)
 *   memfd MIB              memfd_create + ftruncate + shared mapping, touched
 *   fork PAGES             touch PAGES, fork; the child writes every page
 *                          (copy-on-write: one new anon folio per page), parent waits
 *   threads N PAGES        N threads, each maps and touches PAGES order-0 pages
 *   files DIR COUNT [BYTES]  create COUNT files of BYTES (default 1) in DIR (inodes,
 *                          dentries: kernel memory charged to the memcg), keep them
 *   linger PAGES MS        touch PAGES, then sleep MS milliseconds (a task that outlives
 *                          its parent)
 *   hog MIB                touch MIB of anon, 1 MiB at a time (meets a memory limit)
 *   swap MIB               touch MIB of anon, then read every page again
 *                          (above a limit, with swap: swapped out, then in)
 * Each mode prints one line "mode=... pid=... pages=..." when it is done and
 * exits 0; errors print one line on stderr and exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024L * 1024L)
#define HPAGE (2L * MIB)

static long page;

static void die(const char *what)
{
    fprintf(stderr, "mem: %s: %s\n", what, strerror(errno));
    exit(1);
}

static char *map_anon(size_t len, int advice)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    if (madvise(p, len, advice))
        die("madvise");
    return p;
}

static void touch(volatile char *p, size_t len)
{
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
}

static int anon(long pages)
{
    char *p = map_anon(pages * page, MADV_NOHUGEPAGE);
    touch(p, pages * page);
    printf("mode=anon pid=%d pages=%ld\n", getpid(), pages);
    return 0;
}

static int thp(long mib, int split)
{
    size_t len = mib * MIB;
    /* over-map by one huge page so the range can start on a 2 MiB boundary */
    char *raw = mmap(NULL, len + HPAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        die("mmap");
    char *p = (char *)(((unsigned long)raw + HPAGE - 1) & ~(HPAGE - 1));
    if (madvise(p, len, MADV_HUGEPAGE))
        die("madvise(MADV_HUGEPAGE)");
    touch(p, len);
    if (split)
        for (size_t off = 0; off < len; off += HPAGE)
            if (munmap(p + off, page))
                die("munmap");
    printf("mode=thp pid=%d pages=%ld split=%d\n", getpid(), (long)(len / page), split);
    return 0;
}

static int file(const char *path, long mib, int keep)
{
    static char buf[1 << 20];
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0)
        die(path);
    memset(buf, 0x5a, sizeof(buf));
    for (long i = 0; i < mib; i++)
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
            die("write");
    if (lseek(fd, 0, SEEK_SET) < 0)
        die("lseek");
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    if (keep && fsync(fd))
        die("fsync");
    close(fd);
    if (!keep && unlink(path))
        die("unlink");
    printf("mode=file pid=%d pages=%ld keep=%d\n", getpid(), mib * MIB / page, keep);
    return 0;
}

static int memfd(long mib)
{
    size_t len = mib * MIB;
    int fd = memfd_create("corpus", 0);
    if (fd < 0)
        die("memfd_create");
    if (ftruncate(fd, len))
        die("ftruncate");
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    touch(p, len);
    printf("mode=memfd pid=%d pages=%ld\n", getpid(), (long)(len / page));
    return 0;
}

static int cow(long pages)
{
    char *p = map_anon(pages * page, MADV_NOHUGEPAGE);
    touch(p, pages * page);
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        for (long i = 0; i < pages; i++)
            p[i * page] = 2; /* write fault on a shared anon page: copy */
        _exit(0);
    }
    int status;
    if (waitpid(child, &status, 0) < 0)
        die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "mem: fork child failed\n");
        return 1;
    }
    printf("mode=fork pid=%d child=%d pages=%ld\n", getpid(), child, pages);
    return 0;
}

static void *thread_main(void *arg)
{
    long pages = (long)arg;
    char *p = map_anon(pages * page, MADV_NOHUGEPAGE);
    touch(p, pages * page);
    return NULL;
}

static int threads(long n, long pages)
{
    pthread_t t[64];
    if (n < 1 || n > 64) {
        fprintf(stderr, "mem: threads: 1..64\n");
        return 1;
    }
    for (long i = 0; i < n; i++)
        if ((errno = pthread_create(&t[i], NULL, thread_main, (void *)pages)))
            die("pthread_create");
    for (long i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("mode=threads pid=%d threads=%ld pages=%ld\n", getpid(), n, n * pages);
    return 0;
}

static int files(const char *dir, long count, long bytes)
{
    char data[4096];
    memset(data, 'x', sizeof(data));
    if (bytes < 0 || bytes > (long)sizeof(data)) {
        fprintf(stderr, "mem: files: BYTES 0..4096\n");
        return 1;
    }
    char path[4096];
    if (mkdir(dir, 0755) && errno != EEXIST)
        die(dir);
    for (long i = 0; i < count; i++) {
        snprintf(path, sizeof(path), "%s/f%06ld", dir, i);
        int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0)
            die(path);
        if (bytes && write(fd, data, bytes) != bytes)
            die("write");
        close(fd);
    }
    printf("mode=files pid=%d files=%ld\n", getpid(), count);
    return 0;
}

static int linger(long pages, long ms)
{
    char *p = map_anon(pages * page, MADV_NOHUGEPAGE);
    touch(p, pages * page);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
    printf("mode=linger pid=%d pages=%ld\n", getpid(), pages);
    return 0;
}

static int hog(long mib)
{
    for (long i = 0; i < mib; i++)
        touch(map_anon(MIB, MADV_NOHUGEPAGE), MIB);
    printf("mode=hog pid=%d pages=%ld\n", getpid(), mib * MIB / page);
    return 0;
}

static int swap(long mib)
{
    size_t len = mib * MIB;
    volatile char *p = map_anon(len, MADV_NOHUGEPAGE);
    touch(p, len);
    long sum = 0;
    for (size_t off = 0; off < len; off += page)
        sum += p[off];
    printf("mode=swap pid=%d pages=%ld sum=%ld\n", getpid(), (long)(len / page), sum);
    return 0;
}

int main(int argc, char **argv)
{
    page = sysconf(_SC_PAGESIZE);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *m = argc > 1 ? argv[1] : "";
    long a2 = argc > 2 ? atol(argv[2]) : 0, a3 = argc > 3 ? atol(argv[3]) : 0;
    if (!strcmp(m, "anon") && argc == 3)
        return anon(a2);
    if (!strcmp(m, "thp") && (argc == 3 || argc == 4))
        return thp(a2, argc == 4 && !strcmp(argv[3], "split"));
    if (!strcmp(m, "file") && argc == 5)
        return file(argv[2], a3, !strcmp(argv[4], "keep"));
    if (!strcmp(m, "memfd") && argc == 3)
        return memfd(a2);
    if (!strcmp(m, "fork") && argc == 3)
        return cow(a2);
    if (!strcmp(m, "threads") && argc == 4)
        return threads(a2, a3);
    if (!strcmp(m, "files") && (argc == 4 || argc == 5))
        return files(argv[2], a3, argc == 5 ? atol(argv[4]) : 1);
    if (!strcmp(m, "linger") && argc == 4)
        return linger(a2, a3);
    if (!strcmp(m, "hog") && argc == 3)
        return hog(a2);
    if (!strcmp(m, "swap") && argc == 3)
        return swap(a2);
    fprintf(stderr, "usage: mem anon|thp|file|memfd|fork|threads|files|linger|hog|swap ARGS (see mem.c)\n");
    return 2;
}
