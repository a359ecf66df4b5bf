/* Guest workload helper for the dumpfilter VM tests (built static on the host).
 *
 *   vmhelper hog MIB KIND     fill MIB of private anonymous memory, then keep it in a
 *                             background child (returns once the memory is filled)
 *   vmhelper stale MIB        fill MIB of anonymous memory with text and exit
 *                             (the pages go back to the buddy allocator non-zero)
 *   vmhelper write FILE MIB KIND   write a file
 *   vmhelper run OUT CMD ARGS...   run CMD (stdio inherited) and write to OUT its exit
 *                             status, wall time, peak RSS (wait4's ru_maxrss = the
 *                             VmHWM of its memory at exit), the highest VmHWM read
 *                             from /proc/PID/status while it ran, and the lowest
 *                             MemFree / MemAvailable seen (polled every 20 ms)
 *
 * KIND: text (log-like lines, compresses well), random (incompressible pages),
 * zero (explicitly written zeros), ints (small integers), mixed (a quarter of each).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static unsigned long text_line;

static void gen_text(char *p, size_t n)
{
	size_t off = 0;
	char line[160];
	while (off < n) {
		unsigned long i = text_line++;
		int len = snprintf(line, sizeof(line),
				   "2026-12-02T%02lu:%02lu:%02lu.%06lu vmtest kernel: [%8lu.%06lu] "
				   "event=%lu queue=%lu state=%s value=%08lx\n",
				   (i / 3600) % 24, (i / 60) % 60, i % 60, (i * 7919) % 1000000,
				   i / 1000, (i * 131) % 1000000, i, i % 17,
				   (i % 3) ? "running" : "waiting", (unsigned long)(i * 2654435761UL));
		if ((size_t)len > n - off)
			len = (int)(n - off);
		memcpy(p + off, line, len);
		off += len;
	}
}

/* Text pages: a pool of generated pages, each copy stamped with a page serial number, so
 * no two pages are identical (per-page compression sees ordinary log text) while the
 * emulated CPU is spared snprintf for every line. */
#define POOL_PAGES 64
static char text_pool[POOL_PAGES][4096];
static unsigned long text_pages;

static void fill_text(char *p, size_t n)
{
	if (!text_pages)
		gen_text(&text_pool[0][0], sizeof(text_pool));
	for (size_t off = 0; off < n; off += 4096) {
		size_t len = n - off < 4096 ? n - off : 4096;
		unsigned long serial = text_pages++;
		memcpy(p + off, text_pool[serial % POOL_PAGES], len);
		char stamp[24];
		int sl = snprintf(stamp, sizeof(stamp), "%016lx ", serial);
		memcpy(p + off, stamp, (size_t)sl < len ? (size_t)sl : len);
	}
}

static void fill_random(char *p, size_t n)
{
	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t r = next_rand();
		memcpy(p + i, &r, 8);
	}
}

static void fill_ints(char *p, size_t n)
{
	uint32_t *q = (uint32_t *)p;
	for (size_t i = 0; i < n / 4; i++)
		q[i] = (uint32_t)(i % 251);
}

static void fill(char *p, size_t n, const char *kind)
{
	if (!strcmp(kind, "text")) {
		fill_text(p, n);
	} else if (!strcmp(kind, "random")) {
		fill_random(p, n);
	} else if (!strcmp(kind, "zero")) {
		for (size_t i = 0; i < n; i += 4096)
			p[i] = 1;  /* touch, then write zeros: the pages are present */
		memset(p, 0, n);
	} else if (!strcmp(kind, "ints")) {
		fill_ints(p, n);
	} else if (!strcmp(kind, "mixed")) {
		size_t q = n / 4 & ~(size_t)4095;
		fill_random(p, q);
		fill_text(p + q, q);
		fill(p + 2 * q, q, "zero");
		fill_ints(p + 3 * q, n - 3 * q);
	} else {
		fprintf(stderr, "vmhelper: unknown kind %s\n", kind);
		exit(2);
	}
}

static char *anon(size_t n)
{
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("vmhelper: mmap");
		exit(1);
	}
	madvise(p, n, MADV_NOHUGEPAGE);
	return p;
}

static long meminfo_kb(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);
	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static long read_file(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, n - 1);
	close(fd);
	if (r < 0)
		return -1;
	buf[r] = 0;
	return r;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int run(const char *out, char **argv)
{
	char buf[8192], path[64];
	long minfree = -1, minavail = -1, hwm = 0;
	unsigned long polls = 0;
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0)
		return 127;
	if (pid == 0) {
		execvp(argv[0], argv);
		perror("vmhelper: exec");
		_exit(127);
	}
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	int status = 0;
	struct rusage ru;
	for (;;) {
		pid_t w = wait4(pid, &status, WNOHANG, &ru);
		if (w == pid)
			break;
		if (read_file("/proc/meminfo", buf, sizeof(buf)) > 0) {
			long f = meminfo_kb(buf, "MemFree:"), a = meminfo_kb(buf, "MemAvailable:");
			if (minfree < 0 || f < minfree)
				minfree = f;
			if (minavail < 0 || a < minavail)
				minavail = a;
		}
		if (read_file(path, buf, sizeof(buf)) > 0) {
			long h = meminfo_kb(buf, "VmHWM:");
			if (h > hwm)
				hwm = h;
		}
		polls++;
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	double wall = now() - t0;
	int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	FILE *f = fopen(out, "w");
	if (!f)
		return 127;
	fprintf(f, "rc=%d wall_ms=%.0f maxrss_kb=%ld hwm_polled_kb=%ld minfree_kb=%ld "
		"minavail_kb=%ld polls=%lu user_ms=%.0f sys_ms=%.0f\n", rc, wall * 1000,
		ru.ru_maxrss, hwm, minfree, minavail, polls,
		ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3,
		ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3);
	fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "run"))
		return run(argv[2], argv + 3);
	if (argc >= 4 && !strcmp(argv[1], "hog")) {
		size_t n = strtoull(argv[2], NULL, 0) << 20;
		int pfd[2];
		if (pipe(pfd))
			return 1;
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid > 0) {
			char c;
			close(pfd[1]);
			return read(pfd[0], &c, 1) == 1 ? 0 : 1;
		}
		close(pfd[0]);
		setsid();
		char *p = anon(n);
		fill(p, n, argv[3]);
		if (write(pfd[1], "k", 1) != 1)
			return 1;
		close(pfd[1]);
		for (;;)
			pause();
	}
	if (argc >= 3 && !strcmp(argv[1], "stale")) {
		size_t n = strtoull(argv[2], NULL, 0) << 20;
		char *p = anon(n);
		fill(p, n, "text");
		return 0;
	}
	if (argc >= 5 && !strcmp(argv[1], "write")) {
		size_t n = strtoull(argv[3], NULL, 0) << 20;
		size_t chunk = 1 << 20;
		char *buf = malloc(chunk);
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || !buf) {
			perror("vmhelper: open");
			return 1;
		}
		for (size_t done = 0; done < n; done += chunk) {
			fill(buf, chunk, argv[4]);
			if (write(fd, buf, chunk) != (ssize_t)chunk) {
				perror("vmhelper: write");
				return 1;
			}
		}
		return close(fd) ? 1 : 0;
	}
	fprintf(stderr, "usage: vmhelper hog MIB KIND | stale MIB | write FILE MIB KIND | "
		"run OUT CMD ARGS...\n");
	return 2;
}
