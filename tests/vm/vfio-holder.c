/*
 * vfio-holder: hold VFIO groups and devices the way QEMU does.
 *
 *   vfio-holder [--no-container] [--force] [--exit | --no-stdin]
 *               [--group N]... [ADDR]...
 *
 * Opens /dev/vfio/N for the group of every ADDR (and every --group N),
 * prints each group's VFIO_GROUP_GET_STATUS, attaches the groups to one
 * type1v2 container (VFIO_GROUP_SET_CONTAINER claims the DMA ownership of
 * the group, VFIO_SET_IOMMU), then gets a device fd for every ADDR.  Once
 * everything is held it prints "ready" and waits until its standard input
 * closes or it gets SIGTERM/SIGINT; then it closes everything and exits 0.
 *
 *   --no-container   only open the groups (no container, no device fds)
 *   --force          try VFIO_GROUP_SET_CONTAINER on a non-viable group
 *                    instead of refusing as QEMU does
 *   --exit           exit once everything is held instead of waiting
 *   --no-stdin       wait for SIGTERM/SIGINT only, not for standard input
 *                    to close (a shell's background jobs inherit fds)
 *
 * Every step prints one line on stdout; a failure prints
 *   vfio-holder: error: STEP: MESSAGE [ERRNO_NAME]
 * on stderr and "error STEP ERRNO_NAME" on stdout.  Exit status: 0, 1 for
 * usage, 2 when opening a group fails, 3 for a non-viable group, 4 for any
 * other failure.
 *
 * Plain libc, so that it runs anywhere the VM tier runs.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/vfio.h>

#define MAX_ITEMS 64

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
    stop = sig;
}

static const char *
errno_name(int err)
{
    const char *name = strerrorname_np(err);

    return name ? name : "E?";
}

static int
fail(int status, int err, const char *step, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "vfio-holder: error: %s: ", step);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (err)
        fprintf(stderr, ": %s [%s]", strerror(err), errno_name(err));
    fputc('\n', stderr);
    printf("error %s %s\n", step, err ? errno_name(err) : "-");
    fflush(stdout);
    return status;
}

static int
device_group(const char *addr)
{
    char path[PATH_MAX];
    char target[PATH_MAX];
    ssize_t len;
    const char *base;

    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", addr);
    len = readlink(path, target, sizeof(target) - 1);
    if (len < 0)
        return -errno;
    target[len] = '\0';
    base = strrchr(target, '/');
    return atoi(base ? base + 1 : target);
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: vfio-holder [--no-container] [--force] [--exit | --no-stdin] "
            "[--group N]... [PCI_ADDRESS]...\n");
}

int
main(int argc, char **argv)
{
    const char *devices[MAX_ITEMS];
    int groups[MAX_ITEMS];
    int group_fds[MAX_ITEMS];
    int device_fds[MAX_ITEMS];
    size_t ndevices = 0;
    size_t ngroups = 0;
    bool no_container = false;
    bool force = false;
    bool exit_at_once = false;
    bool use_stdin = true;
    int container = -1;
    struct sigaction sa;
    size_t i;
    int j;

    for (j = 1; j < argc; j++) {
        const char *arg = argv[j];

        if (strcmp(arg, "--no-container") == 0) {
            no_container = true;
        } else if (strcmp(arg, "--force") == 0) {
            force = true;
        } else if (strcmp(arg, "--exit") == 0) {
            exit_at_once = true;
        } else if (strcmp(arg, "--no-stdin") == 0) {
            use_stdin = false;
        } else if (strcmp(arg, "--group") == 0 && j + 1 < argc) {
            int group = atoi(argv[++j]);
            bool dup = false;

            for (i = 0; i < ngroups; i++)
                dup |= groups[i] == group;
            if (!dup && ngroups < MAX_ITEMS)
                groups[ngroups++] = group;
        } else if (arg[0] == '-' || ndevices >= MAX_ITEMS) {
            usage();
            return 1;
        } else {
            devices[ndevices++] = arg;
        }
    }
    if (ndevices == 0 && ngroups == 0) {
        usage();
        return 1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    for (i = 0; i < ndevices; i++) {
        int group = device_group(devices[i]);
        bool dup = false;
        size_t k;

        if (group < 0)
            return fail(4, -group, "iommu-group", "%s", devices[i]);
        for (k = 0; k < ngroups; k++)
            dup |= groups[k] == group;
        if (!dup && ngroups < MAX_ITEMS)
            groups[ngroups++] = group;
    }

    for (i = 0; i < ngroups; i++) {
        char path[64];
        struct vfio_group_status status = { .argsz = sizeof(status) };

        snprintf(path, sizeof(path), "/dev/vfio/%d", groups[i]);
        group_fds[i] = open(path, O_RDWR | O_CLOEXEC);
        if (group_fds[i] < 0)
            return fail(2, errno, "open-group", "open %s", path);
        printf("group %d open\n", groups[i]);
        if (ioctl(group_fds[i], VFIO_GROUP_GET_STATUS, &status) < 0)
            return fail(4, errno, "get-status", "VFIO_GROUP_GET_STATUS on %s", path);
        printf("group %d status viable=%d container-set=%d\n", groups[i],
               !!(status.flags & VFIO_GROUP_FLAGS_VIABLE),
               !!(status.flags & VFIO_GROUP_FLAGS_CONTAINER_SET));
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE) && !no_container && !force)
            return fail(3, 0, "not-viable",
                        "group %d is not viable (a member is bound to a host driver)",
                        groups[i]);
    }

    if (!no_container) {
        int version;

        container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (container < 0)
            return fail(4, errno, "open-container", "open /dev/vfio/vfio");
        version = ioctl(container, VFIO_GET_API_VERSION);
        if (version != VFIO_API_VERSION)
            return fail(4, 0, "api-version", "VFIO API version %d, expected %d",
                        version, VFIO_API_VERSION);
        if (ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
            return fail(4, 0, "check-extension", "no VFIO_TYPE1v2_IOMMU");

        for (i = 0; i < ngroups; i++) {
            if (ioctl(group_fds[i], VFIO_GROUP_SET_CONTAINER, &container) < 0)
                return fail(4, errno, "set-container",
                            "VFIO_GROUP_SET_CONTAINER on group %d", groups[i]);
            printf("group %d container-set\n", groups[i]);
            if (i == 0) {
                if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
                    return fail(4, errno, "set-iommu", "VFIO_SET_IOMMU(TYPE1v2)");
                printf("iommu type1v2\n");
            }
        }

        for (i = 0; i < ndevices; i++) {
            int group = device_group(devices[i]);
            size_t k;

            for (k = 0; k < ngroups && groups[k] != group; k++)
                ;
            device_fds[i] = ioctl(group_fds[k], VFIO_GROUP_GET_DEVICE_FD, devices[i]);
            if (device_fds[i] < 0)
                return fail(4, errno, "get-device-fd",
                            "VFIO_GROUP_GET_DEVICE_FD %s", devices[i]);
            printf("device %s open\n", devices[i]);
        }
    }

    printf("ready\n");
    if (!exit_at_once) {
        struct pollfd pfd = { .fd = use_stdin ? STDIN_FILENO : -1, .events = POLLIN };
        char buf[256];

        while (!stop) {
            int n = poll(&pfd, 1, -1);

            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))
                break;
            if ((pfd.revents & POLLIN) && read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
                break;
        }
    }

    for (i = 0; !no_container && i < ndevices; i++)
        close(device_fds[i]);
    for (i = 0; i < ngroups; i++)
        close(group_fds[i]);
    if (container >= 0)
        close(container);
    printf("released\n");
    return 0;
}
