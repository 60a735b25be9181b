/* The kernel's own price for each protection of an agent-mode sandbox,
 * measured without any runtime around it. Each probe repeats one piece of
 * kernel work and prints its median in microseconds:
 *
 *   kernel-costs clone N          fork+wait of a child in new pid, net, ipc,
 *                                 uts, mount and cgroup namespaces (what the
 *                                 `unshare` floor pays)
 *   kernel-costs cgroups N        mkdir+rmdir of a leaf under this process's
 *                                 own cgroup in every mounted hierarchy
 *   kernel-costs seccomp N FILE   seccomp(SET_MODE_FILTER) of a program cached
 *                                 by nucleus (its .bpf file), in a fresh child
 *   kernel-costs mounts N K       in a fresh mount namespace: a tmpfs plus K
 *                                 read-only bind mounts of /usr (bind, then
 *                                 remount ro), and the namespace's teardown
 *   kernel-costs landlock N K     a Landlock ruleset with K path rules, then
 *                                 landlock_restrict_self, in a fresh child
 *   kernel-costs lo N             bringing loopback up in a new net namespace
 *
 * Run as root. Nothing is left behind: leaves are removed, children exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Runs fn in a forked child; the child reports the time fn took on a pipe.
 * With `whole`, the time is the parent's: fork to reaped, teardown included. */
static double in_child(double (*fn)(void *), void *arg, int flags, int whole)
{
    int p[2];
    if (pipe(p))
        die("pipe");
    double t0 = now_us();
    pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD | flags, 0, 0, 0, 0);
    if (pid < 0)
        die("clone");
    if (pid == 0) {
        double us = fn(arg);
        if (write(p[1], &us, sizeof us) != sizeof us)
            _exit(1);
        _exit(us < 0);
    }
    close(p[1]);
    double us = -1;
    if (read(p[0], &us, sizeof us) != sizeof us)
        us = -1;
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || us < 0) {
        fprintf(stderr, "probe child failed\n");
        exit(1);
    }
    return whole ? now_us() - t0 : us;
}

static double nothing(void *arg)
{
    (void)arg;
    return 0;
}

/* ---- cgroups: every hierarchy of /proc/self/cgroup, mounted as nucleus finds them */
static int cgroup_dirs(char dirs[][512], int max)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        die("/proc/self/cgroup");
    char line[1024];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *ctrl = c1 + 1, *path = c2 + 1;
        char mnt[256];
        if (*ctrl == 0)
            snprintf(mnt, sizeof mnt, "/sys/fs/cgroup/unified");
        else if (strncmp(ctrl, "name=", 5) == 0)
            snprintf(mnt, sizeof mnt, "/sys/fs/cgroup/%s", ctrl + 5);
        else {
            snprintf(mnt, sizeof mnt, "/sys/fs/cgroup/%s", ctrl);
            char *comma = strchr(mnt + 15, ',');
            if (comma && access(mnt, F_OK) != 0)
                *comma = 0;
        }
        struct stat st;
        if (*ctrl == 0 && stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0)
            snprintf(mnt, sizeof mnt, "/sys/fs/cgroup");
        snprintf(dirs[n], 512, "%s%s/kernel-costs-%d", mnt, strcmp(path, "/") ? path : "", (int)getpid());
        char parent[512];
        snprintf(parent, sizeof parent, "%s%s", mnt, strcmp(path, "/") ? path : "");
        if (stat(parent, &st) == 0)
            n++;
    }
    fclose(f);
    return n;
}

/* ---- seccomp: nucleus's cache format is "NUCBPF01", u32 flags, u32 count, insns */
static struct sock_fprog prog;

static void load_prog(const char *file)
{
    static unsigned char buf[1 << 20];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(file);
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 16 || memcmp(buf, "NUCBPF01", 8) != 0) {
        fprintf(stderr, "%s: not a nucleus seccomp cache file\n", file);
        exit(1);
    }
    prog.len = (unsigned short)((n - 16) / 8);
    prog.filter = (struct sock_filter *)(buf + 16);
}

static double seccomp_once(void *arg)
{
    (void)arg;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return -1;
    double t = now_us();
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
        return -1;
    return now_us() - t;
}

/* ---- mounts */
static char mnt_base[] = "/tmp/kernel-costs-XXXXXX";
static int n_binds;

static double mounts_once(void *arg)
{
    (void)arg;
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL))
        return -1;
    if (mount("tmpfs", mnt_base, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m"))
        return -1;
    char p[256];
    for (int i = 0; i < n_binds; i++) {
        snprintf(p, sizeof p, "%s/%d", mnt_base, i);
        if (mkdir(p, 0755) || mount("/usr", p, NULL, MS_BIND, NULL) ||
            mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL))
            return -1;
    }
    return 0;
}

/* ---- landlock */
static int n_rules;

static double landlock_once(void *arg)
{
    (void)arg;
    double t = now_us();
    struct landlock_ruleset_attr attr = {
        .handled_access_fs = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE |
                             LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_WRITE_FILE |
                             LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_DIR,
    };
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (rs < 0)
        return -1;
    static const char *paths[] = {"/usr", "/etc", "/tmp", "/proc", "/dev", "/bin", "/lib", "/run", "/var", "/home", "/root", "/sys"};
    for (int i = 0; i < n_rules; i++) {
        struct landlock_path_beneath_attr pb = {
            .allowed_access = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR,
            .parent_fd = open(paths[i % 12], O_PATH | O_CLOEXEC),
        };
        if (pb.parent_fd < 0 || syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0))
            return -1;
        close(pb.parent_fd);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_landlock_restrict_self, rs, 0))
        return -1;
    close(rs);
    return now_us() - t;
}

/* ---- loopback */
static double lo_once(void *arg)
{
    (void)arg;
    double t = now_us();
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr))
        return -1;
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr))
        return -1;
    close(s);
    return now_us() - t;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kernel-costs clone|cgroups|seccomp|mounts|landlock|lo N [ARG]\n");
        return 2;
    }
    const char *what = argv[1];
    int n = atoi(argv[2]);
    if (n <= 0 || n > 100000)
        return 2;
    double *v = calloc((size_t)n, sizeof *v);
    if (!v)
        die("calloc");
    const int ns = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS | CLONE_NEWCGROUP;
    if (strcmp(what, "clone") == 0) {
        for (int i = 0; i < n; i++)
            v[i] = in_child(nothing, NULL, ns, 1);
    } else if (strcmp(what, "cgroups") == 0) {
        char dirs[32][512];
        int k = cgroup_dirs(dirs, 32);
        for (int i = 0; i < n; i++) {
            double t = now_us();
            for (int j = 0; j < k; j++)
                if (mkdir(dirs[j], 0755))
                    die(dirs[j]);
            for (int j = 0; j < k; j++)
                if (rmdir(dirs[j]))
                    die(dirs[j]);
            v[i] = now_us() - t;
        }
        fprintf(stderr, "cgroups: %d hierarchies\n", k);
    } else if (strcmp(what, "seccomp") == 0 && argc > 3) {
        load_prog(argv[3]);
        fprintf(stderr, "seccomp: %u instructions\n", prog.len);
        for (int i = 0; i < n; i++)
            v[i] = in_child(seccomp_once, NULL, 0, 0);
    } else if (strcmp(what, "mounts") == 0 && argc > 3) {
        n_binds = atoi(argv[3]);
        if (!mkdtemp(mnt_base))
            die("mkdtemp");
        double base[n];
        for (int i = 0; i < n; i++) {
            base[i] = in_child(nothing, NULL, CLONE_NEWNS, 1);
            v[i] = in_child(mounts_once, NULL, CLONE_NEWNS, 1);
        }
        rmdir(mnt_base);
        /* the mount work alone: minus a mount namespace that does nothing */
        double b = median(base, n), m = median(v, n);
        printf("%.1f\n", m - b);
        return 0;
    } else if (strcmp(what, "landlock") == 0 && argc > 3) {
        n_rules = atoi(argv[3]);
        for (int i = 0; i < n; i++)
            v[i] = in_child(landlock_once, NULL, 0, 0);
    } else if (strcmp(what, "lo") == 0) {
        for (int i = 0; i < n; i++)
            v[i] = in_child(lo_once, NULL, CLONE_NEWNET, 0);
    } else {
        fprintf(stderr, "unknown probe %s\n", what);
        return 2;
    }
    printf("%.1f\n", median(v, n));
    return 0;
}
