/* device_free: a short device-private life cycle, for a quick lab check of one kernel.
 *
 * Run by `chargetrace lab run --workload` inside the recorder's fresh memcg with test_hmm loaded
 * (/dev/hmm_dmirror0). It takes a second or two where hmm-tests takes minutes under TCG, and yet
 * walks every accounting step a device-private page has:
 *   1. write NPAGES anonymous pages (ordinary charges);
 *   2. migrate them to device memory (HMM_DMIRROR_MIGRATE_TO_DEV): each device page takes over
 *      its RAM page's charge (mem_cgroup_migrate(): force-charge up to 6.6, transfer from 6.7);
 *   3. read the first half back with the CPU: each fault migrates the page to RAM again
 *      (dmirror_devmem_fault() -> migrate_vma_*), and the device page is freed;
 *   4. munmap the buffer: the second half's device pages are freed by the unmap
 *      (zap_pte_range() -> free_zone_device_page() / free_zone_device_folio()), each of which
 *      must uncharge (R6 reports a free that does not).
 * No memory limit, no fork, no file I/O after step 1: every charge has one owner and one end.
 * Exit 0 when the migration moved every page and the pages read back hold what was written.
 * Usage: device_free NPAGES
 * The ioctl ABI is lib/test_hmm_uapi.h (the same in 6.1 and 6.12). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct hmm_dmirror_cmd {
	uint64_t addr, ptr, npages, cpages, faults;
};
#define HMM_DMIRROR_MIGRATE_TO_DEV _IOWR('H', 0x02, struct hmm_dmirror_cmd)

int main(int argc, char **argv)
{
	if (argc != 2 || atol(argv[1]) < 2) {
		fprintf(stderr, "usage: %s NPAGES (>= 2)\n", argv[0]);
		return 2;
	}
	long n = atol(argv[1]), ps = sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);
	int fd = open("/dev/hmm_dmirror0", O_RDWR);
	if (fd < 0) {
		perror("device_free: /dev/hmm_dmirror0");
		return 2;
	}
	unsigned char *buf = mmap(NULL, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* The driver copies the device's view of the range here (HMM_DMIRROR_MIGRATE_TO_DEV's ptr). */
	unsigned char *mirror = malloc(n * ps);
	if (buf == MAP_FAILED || !mirror) {
		perror("device_free: mmap/malloc");
		return 2;
	}
	/* Base pages only: a THP would be split before migration and blur the page count. */
	madvise(buf, n * ps, MADV_NOHUGEPAGE);
	for (long i = 0; i < n; i++)
		buf[i * ps] = (unsigned char)(i * 7 + 1);
	struct hmm_dmirror_cmd cmd = {.addr = (uintptr_t)buf, .ptr = (uintptr_t)mirror, .npages = n};
	if (ioctl(fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd)) {
		perror("device_free: HMM_DMIRROR_MIGRATE_TO_DEV");
		return 1;
	}
	long half = n / 2, bad = 0;
	for (long i = 0; i < half; i++)
		bad += buf[i * ps] != (unsigned char)(i * 7 + 1);
	munmap(buf, n * ps);
	printf("migrated to device: %llu of %ld pages; read back %ld (%ld wrong); unmapped %ld on the device\n",
	       (unsigned long long)cmd.cpages, n, half, bad, n - half);
	close(fd);
	return cmd.cpages == (uint64_t)n && bad == 0 ? 0 : 1;
}
