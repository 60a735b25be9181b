/* Steady-state syscall cost: N raw getppid(2) calls, timed in-process.
 *
 *   getppid-loop N      prints the mean ns per syscall
 *   getppid-loop files N
 *                       prints the mean ns per open/fstat/pread/close cycle on
 *                       /bin/busybox: a syscall-heavy loop closer to real work
 *                       (path lookup, Landlock's open hook, a 4 KiB read)
 *   getppid-loop probe  prints this process's seccomp mode, filter count and
 *                       the errno of uselib(2), which the bench profile denies
 *                       with EPERM (unfiltered kernels answer ENOSYS or ENOENT)
 *
 * Built static at bench time (gcc -static -O2) so it runs in the busybox rootfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int probe(void)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "Seccomp", 7) == 0)
                fputs(line, stdout);
        fclose(f);
    }
    long r = syscall(SYS_uselib, "/nonexistent");
    printf("uselib: %ld errno %d\n", r, r < 0 ? errno : 0);
    return 0;
}

static int files(long n)
{
    static char buf[4096];
    struct stat st;
    struct timespec a, b;
    if (n <= 0)
        return 2;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        int fd = open("/bin/busybox", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) {
            perror("files loop");
            return 1;
        }
        close(fd);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    printf("%.2f\n", ns / (double)n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "probe") == 0)
        return probe();
    if (argc > 2 && strcmp(argv[1], "files") == 0)
        return files(atol(argv[2]));
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    if (n <= 0)
        return 2;
    struct timespec a, b;
    long failed = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    /* all six argument registers zeroed: the arg-filtered profile allows
       getppid only when arg0 == 0, and a denied call would skip the syscall */
    for (long i = 0; i < n; i++)
        failed += syscall(SYS_getppid, 0L, 0L, 0L, 0L, 0L, 0L) < 0;
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (failed) {
        fprintf(stderr, "getppid failed %ld times (errno %d)\n", failed, errno);
        return 1;
    }
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    printf("%.2f\n", ns / (double)n);
    return 0;
}
