/* thp_churn: device-private THP under concurrent migrate / fault / zap, for the 7.2 lab.
 *
 * Run by `chargetrace lab run --kernel 7.2 --workload` inside the recorder's fresh memcg
 * (cgroup v2, optionally under --memory-max) with test_hmm loaded. NGROUPS groups of three
 * threads share one 2 MiB-aligned, MADV_HUGEPAGE region each (one PMD-sized THP):
 *   - the migrator moves the region to device memory (HMM_DMIRROR_MIGRATE_TO_DEV: with
 *     MIGRATE_VMA_SELECT_COMPOUND test_hmm migrates a whole THP, or inserts a 512-page
 *     device-private THP into an empty range: d245f9b4ab80, 6.19), sometimes back
 *     (HMM_DMIRROR_MIGRATE_TO_SYS);
 *   - the faulter writes random pages of it with the CPU (a fault on a device-private
 *     PMD or PTE migrates the folio back: do_huge_pmd_device_private() / migrate_to_ram);
 *   - the zapper splits and frees pieces of it: MADV_DONTNEED of a half or of one page
 *     (splits the PMD, leaves a partially mapped large folio), mprotect() of one page
 *     (splits the PMD), MADV_FREE of a quarter, MADV_HUGEPAGE again.
 * Every thread opens its own /dev/hmm_dmirror0 (a mirror of the same mm). The data is not
 * checked (a zapped page legitimately reads 0 again): the recording is judged on the host by
 * `chargetrace replay` (R1-R15), the kernel by its own log (WARN/BUG). Prints the counts of
 * each operation and its errors; exits 0 unless it could not start.
 * Usage: thp_churn NGROUPS ROUNDS [SECONDS]   (stops at ROUNDS per thread or SECONDS, default 300)
 * The ioctl ABI is lib/test_hmm_uapi.h (7.2: MIGRATE_TO_DEV 0x02, MIGRATE_TO_SYS 0x03). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct hmm_dmirror_cmd {
	uint64_t addr, ptr, npages, cpages, faults;
};
#define HMM_DMIRROR_MIGRATE_TO_DEV _IOWR('H', 0x02, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_MIGRATE_TO_SYS _IOWR('H', 0x03, struct hmm_dmirror_cmd)

#define THP (2UL << 20)
#define PAGE 4096UL
#define NPAGES (THP / PAGE)

enum { MIG_DEV, MIG_DEV_ERR, MIG_SYS, MIG_SYS_ERR, FAULT, DONTNEED_HALF, DONTNEED_PAGE, MPROTECT,
       FREE_QUARTER, REHUGE, NCOUNT };
static const char *names[NCOUNT] = {"migrate_to_dev", "migrate_to_dev_err", "migrate_to_sys",
	"migrate_to_sys_err", "cpu_writes", "dontneed_half", "dontneed_page", "mprotect_page",
	"free_quarter", "madvise_hugepage"};
static unsigned long counts[NCOUNT];
static time_t deadline;
static long rounds;

struct group {
	char *region;
	pthread_t t[3];
};

static void count(int what)
{
	__atomic_add_fetch(&counts[what], 1, __ATOMIC_RELAXED);
}

static int open_mirror(void)
{
	int fd = open("/dev/hmm_dmirror0", O_RDWR);
	if (fd < 0) {
		perror("open /dev/hmm_dmirror0");
		exit(2);
	}
	return fd;
}

static int mirror_cmd(int fd, unsigned long req, char *addr, void *mirror)
{
	struct hmm_dmirror_cmd cmd = {.addr = (uintptr_t)addr, .ptr = (uintptr_t)mirror, .npages = NPAGES};
	return ioctl(fd, req, &cmd) < 0 ? -errno : 0;
}

static int go_on(long i)
{
	return i < rounds && time(NULL) < deadline;
}

static void *migrator(void *arg)
{
	struct group *g = arg;
	int fd = open_mirror();
	void *mirror = malloc(THP);
	unsigned seed = (unsigned)(uintptr_t)g;
	for (long i = 0; go_on(i); i++) {
		if (rand_r(&seed) % 4 == 0) {
			count(mirror_cmd(fd, HMM_DMIRROR_MIGRATE_TO_SYS, g->region, mirror) ? MIG_SYS_ERR : MIG_SYS);
		} else {
			count(mirror_cmd(fd, HMM_DMIRROR_MIGRATE_TO_DEV, g->region, mirror) ? MIG_DEV_ERR : MIG_DEV);
		}
	}
	free(mirror);
	close(fd);
	return NULL;
}

static void *faulter(void *arg)
{
	struct group *g = arg;
	unsigned seed = (unsigned)(uintptr_t)g ^ 0x5a5a;
	for (long i = 0; go_on(i); i++) {
		/* a burst of writes, so a migrated-away THP is faulted back several times */
		for (int k = 0; k < 8; k++) {
			size_t p = rand_r(&seed) % NPAGES;
			volatile long *word = (volatile long *)(g->region + p * PAGE);
			*word = (long)i;
			count(FAULT);
		}
	}
	return NULL;
}

static void *zapper(void *arg)
{
	struct group *g = arg;
	unsigned seed = (unsigned)(uintptr_t)g ^ 0xa5a5;
	for (long i = 0; go_on(i); i++) {
		char *r = g->region;
		size_t p = rand_r(&seed) % NPAGES;
		switch (rand_r(&seed) % 5) {
		case 0:
			madvise(r + (rand_r(&seed) % 2) * (THP / 2), THP / 2, MADV_DONTNEED);
			count(DONTNEED_HALF);
			break;
		case 1:
			madvise(r + p * PAGE, PAGE, MADV_DONTNEED);
			count(DONTNEED_PAGE);
			break;
		case 2:
			mprotect(r + p * PAGE, PAGE, PROT_READ);
			mprotect(r + p * PAGE, PAGE, PROT_READ | PROT_WRITE);
			count(MPROTECT);
			break;
		case 3:
			madvise(r + (rand_r(&seed) % 4) * (THP / 4), THP / 4, MADV_FREE);
			count(FREE_QUARTER);
			break;
		default:
			madvise(r, THP, MADV_HUGEPAGE);
			count(REHUGE);
		}
		usleep(2000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s NGROUPS ROUNDS [SECONDS]\n", argv[0]);
		return 2;
	}
	int ngroups = atoi(argv[1]);
	rounds = atol(argv[2]);
	deadline = time(NULL) + (argc > 3 ? atol(argv[3]) : 300);
	if (ngroups < 1 || rounds < 1)
		return 2;
	struct group *groups = calloc(ngroups, sizeof(*groups));
	for (int i = 0; i < ngroups; i++) {
		char *raw = mmap(NULL, 2 * THP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (raw == MAP_FAILED) {
			perror("mmap");
			return 2;
		}
		groups[i].region = (char *)(((uintptr_t)raw + THP - 1) & ~(THP - 1));
		madvise(groups[i].region, THP, MADV_HUGEPAGE);
		/* half the groups start as an empty range: their first migration is a hole insertion
		 * of a device-private THP; the others start as a CPU-written THP */
		if (i % 2 == 0)
			memset(groups[i].region, 1, THP);
	}
	for (int i = 0; i < ngroups; i++) {
		pthread_create(&groups[i].t[0], NULL, migrator, &groups[i]);
		pthread_create(&groups[i].t[1], NULL, faulter, &groups[i]);
		pthread_create(&groups[i].t[2], NULL, zapper, &groups[i]);
	}
	for (int i = 0; i < ngroups; i++)
		for (int k = 0; k < 3; k++)
			pthread_join(groups[i].t[k], NULL);
	for (int i = 0; i < NCOUNT; i++)
		printf("%s %lu\n", names[i], counts[i]);
	return 0;
}
