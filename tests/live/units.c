/* Workloads whose memcg counter units the live unit tests check.
 *
 * usage: units anon NPAGES        order-0 anon (MADV_NOHUGEPAGE): one folio per page
 *        units thp NHUGE          anon THP (MADV_HUGEPAGE, 2 MiB aligned): one folio per 512 pages
 *        units cache PATH NPAGES  write NPAGES pages to a new file on a disk file system,
 *                                 fsync, read it back, delete it (large page-cache folios)
 * Prints "pages=N" (the pages it touched) and, for thp, "thp=N" (huge pages it
 * found backed by a THP in /proc/self/smaps_rollup AnonHugePages).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE (2UL << 20)

static unsigned long anon_huge_kb(void)
{
    char line[256];
    unsigned long kb = 0;
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int anon(unsigned long pages, int huge)
{
    size_t len = pages * 4096UL;
    char *raw = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return perror("mmap"), 1;
    char *p = (char *)(((unsigned long)raw + HUGE - 1) & ~(HUGE - 1));
    if (madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
        return perror("madvise"), 1;
    for (size_t off = 0; off < len; off += 4096)
        p[off] = 1;
    printf("pages=%lu\n", pages);
    if (huge)
        printf("thp=%lu\n", anon_huge_kb() / 2048);
    fflush(stdout);
    munmap(raw, len + HUGE);
    return 0;
}

static int cache(const char *path, unsigned long pages)
{
    static char buf[1 << 20];
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    if (fd < 0)
        return perror(path), 1;
    memset(buf, 7, sizeof(buf));
    for (unsigned long done = 0; done < pages; done += sizeof(buf) / 4096)
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
            return perror("write"), 1;
    fsync(fd);
    lseek(fd, 0, SEEK_SET);
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
    unlink(path);
    printf("pages=%lu\n", pages);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "anon"))
        return anon(strtoul(argv[2], NULL, 0), 0);
    if (argc == 3 && !strcmp(argv[1], "thp"))
        return anon(strtoul(argv[2], NULL, 0) * 512, 1);
    if (argc == 4 && !strcmp(argv[1], "cache"))
        return cache(argv[2], strtoul(argv[3], NULL, 0));
    fprintf(stderr, "usage: units anon NPAGES | thp NHUGE | cache PATH NPAGES\n");
    return 2;
}
