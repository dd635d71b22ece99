/* limit_migrate: device-private migration under a memcg limit below the working set.
 *
 * Run by `chargetrace lab run --workload` inside the recorder's fresh memcg (cgroup v2) with
 * test_hmm loaded. Steps:
 *   1. protect this process from the OOM killer (oom_score_adj -1000);
 *   2. write NDEV anonymous pages and migrate them to device memory (HMM_DMIRROR_MIGRATE_TO_DEV);
 *   3. fork a child (oom_score_adj 1000) that writes NHOG pages, more than memory.max allows: its
 *      charges fail, reclaim finds nothing to reclaim (no swap), the memcg OOM killer kills it;
 *   4. lower memory.max to half the memcg's usage: below the working set (the device pages stay
 *      charged and cannot be reclaimed; with nothing killable the write returns over the limit);
 *   5. read every device page back with the CPU: each fault migrates the page to RAM, which
 *      Documentation/mm/hmm.rst promises never fails on the memcg limit (R8).
 * After step 4 nothing may be charged the ordinary way (no malloc, no fopen, no new stack or heap
 * page): such a charge would find the memcg over its limit with nothing killable and the fault
 * would retry forever. So the files it reads later are opened before, and the shell that started
 * it is protected from the OOM killer like itself. Its file-backed mappings (the program's text)
 * are mlock()ed first: lowering memory.max reclaims page cache, and a text page read back in is
 * an ordinary charge that would fail forever.
 * Exit 0 when every page came back with its contents; prints what it saw.
 * Usage: limit_migrate NDEV NHOG [MAX_BYTES]   (MAX_BYTES: memory.max before step 3, default 64 MiB)
 * The ioctl ABI is lib/test_hmm_uapi.h (the same in 6.1 and 6.12). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct hmm_dmirror_cmd {
	uint64_t addr, ptr, npages, cpages, faults;
};
#define HMM_DMIRROR_MIGRATE_TO_DEV _IOWR('H', 0x02, struct hmm_dmirror_cmd)

static char cg[256];

static void cgfile(const char *name, char *out, size_t n)
{
	snprintf(out, n, "/sys/fs/cgroup%s/%s", cg, name);
}

static long long readfd(int fd)
{
	char buf[64] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	return n > 0 ? atoll(buf) : -1;
}

static long long readll(const char *name)
{
	char p[600], buf[64] = "";
	cgfile(name, p, sizeof(p));
	FILE *f = fopen(p, "r");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f) fclose(f);
		return -1;
	}
	fclose(f);
	return atoll(buf);
}

static int writes(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0) return -errno;
	int r = write(fd, val, strlen(val)) < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* mlock every file-backed mapping (this static binary's text and data). */
static void lock_file_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char path[256] = "";
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &lo, &hi, path) == 3 && path[0] == '/')
			if (mlock((void *)lo, hi - lo))
				perror("limit_migrate: mlock");
	}
	if (f) fclose(f);
}

static void events(const char *when)
{
	char p[600], line[128];
	cgfile("memory.events", p, sizeof(p));
	FILE *f = fopen(p, "r");
	printf("memory.events %s:", when);
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		printf(" %s", line);
	}
	printf("\n");
	if (f) fclose(f);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s NDEV NHOG [MAX_BYTES]\n", argv[0]);
		return 2;
	}
	long ndev = atol(argv[1]), nhog = atol(argv[2]);
	long long maxb = argc > 3 ? atoll(argv[3]) : 64LL << 20;
	long ps = sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);

	FILE *f = fopen("/proc/self/cgroup", "r");
	char line[600];
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = 0;
			size_t len = strlen(line + 3);
			if (len >= sizeof(cg)) {
				fprintf(stderr, "limit_migrate: cgroup path longer than %zu bytes\n", sizeof(cg) - 1);
				return 2;
			}
			memcpy(cg, line + 3, len + 1);
		}
	if (f) fclose(f);
	if (!cg[0] || !strcmp(cg, "/")) {
		fprintf(stderr, "limit_migrate: not in a cgroup v2 memcg of its own\n");
		return 2;
	}
	writes("/proc/self/oom_score_adj", "-1000");
	char p[600], v[64], pp[64];
	snprintf(pp, sizeof(pp), "/proc/%d/oom_score_adj", (int)getppid());
	writes(pp, "-1000"); /* the shell that ran us, if it is still there */
	cgfile("memory.max", p, sizeof(p));
	snprintf(v, sizeof(v), "%lld", maxb);
	if (writes(p, v)) {
		fprintf(stderr, "limit_migrate: cannot write %s\n", p);
		return 2;
	}

	int fd = open("/dev/hmm_dmirror0", O_RDWR);
	if (fd < 0) {
		perror("limit_migrate: /dev/hmm_dmirror0");
		return 2;
	}
	unsigned char *buf = mmap(NULL, ndev * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *mirror = malloc(ndev * ps);
	if (buf == MAP_FAILED || !mirror)
		return 2;
	madvise(buf, ndev * ps, MADV_NOHUGEPAGE);
	for (long i = 0; i < ndev; i++)
		buf[i * ps] = (unsigned char)(i * 7 + 1);
	struct hmm_dmirror_cmd cmd = {.addr = (uintptr_t)buf, .ptr = (uintptr_t)mirror, .npages = ndev};
	if (ioctl(fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd)) {
		perror("limit_migrate: MIGRATE_TO_DEV");
		return 1;
	}
	printf("migrated to device: %llu of %ld pages; usage %lld bytes, memory.max %lld\n",
	       (unsigned long long)cmd.cpages, ndev, readll("memory.current"), readll("memory.max"));

	pid_t child = fork();
	if (child == 0) {
		writes("/proc/self/oom_score_adj", "1000");
		unsigned char *hog = mmap(NULL, nhog * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (hog == MAP_FAILED)
			_exit(3);
		madvise(hog, nhog * ps, MADV_NOHUGEPAGE);
		for (long i = 0; i < nhog; i++)
			hog[i * ps] = 1;
		_exit(0); /* not reached when nhog pages exceed memory.max */
	}
	int st = 0;
	waitpid(child, &st, 0);
	printf("hog child: %s %d\n", WIFSIGNALED(st) ? "killed by signal" : "exited", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	events("after hog");

	lock_file_mappings();
	char cur[600], mx[600];
	cgfile("memory.current", cur, sizeof(cur));
	cgfile("memory.max", mx, sizeof(mx));
	/* Separate fds for reading and writing memory.max: a read on the written fd returns nothing. */
	int curfd = open(cur, O_RDONLY), maxfd = open(mx, O_WRONLY), maxrd = open(mx, O_RDONLY);
	long long usage = readfd(curfd);
	snprintf(v, sizeof(v), "%lld", usage / 2);
	int r = write(maxfd, v, strlen(v)) < 0 ? -errno : 0;
	long long after = readfd(curfd), limit = readfd(maxrd);

	long bad = 0;
	for (long i = 0; i < ndev; i++)
		bad += buf[i * ps] != (unsigned char)(i * 7 + 1);
	long long end = readfd(curfd);
	/* Only now print: stdout's buffer exists since the first printf, a line is no new charge. */
	printf("memory.max lowered to %lld (usage %lld): %s; usage then %lld, memory.max %lld\n", usage / 2, usage,
	       r ? strerror(-r) : "ok", after, limit);
	printf("read back %ld pages from device memory, %ld wrong; usage %lld (memory.max %lld)\n", ndev, bad,
	       end, limit);
	/* Raise the limit again before anything else allocates (exit, the events read). */
	snprintf(v, sizeof(v), "max");
	if (write(maxfd, v, strlen(v)) < 0)
		perror("limit_migrate: restore memory.max");
	events("end");
	return bad ? 1 : 0;
}
