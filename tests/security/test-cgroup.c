/*
 * test-cgroup.c: device ACLs of a cgroup on this machine's real kernel
 *
 * For each mode present (v1 devices controller at /sys/fs/cgroup/devices,
 * v2 at /sys/fs/cgroup/unified or /sys/fs/cgroup), a fresh cgroup gets a
 * child process that opens a character device node made in a temporary
 * directory: it must succeed after allow and fail with EPERM after deny.
 * Needs root; a missing mode is skipped with the reason.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include "hdcgroup.h"
#include "hdfile.h"
#include "hostdev/error.h"

/* /dev/null's numbers: opening it has no side effect. */
#define TEST_MAJOR 1
#define TEST_MINOR 3

typedef struct {
    const char *parent;     /* where to create the cgroup */
    hdCgroupMode mode;
    char *cgroup;
    char *tmpdir;
    char *node;
} Fixture;


static const char *
testFindParent(hdCgroupMode mode)
{
    static const char *const v1[] = { "/sys/fs/cgroup/devices", NULL };
    static const char *const v2[] = { "/sys/fs/cgroup/unified", "/sys/fs/cgroup", NULL };
    const char *const *candidates = mode == HD_CGROUP_V1 ? v1 : v2;
    guint i;

    for (i = 0; candidates[i]; i++) {
        struct statfs sfs;

        if (statfs(candidates[i], &sfs) < 0)
            continue;
        if ((mode == HD_CGROUP_V1 && sfs.f_type == CGROUP_SUPER_MAGIC) ||
            (mode == HD_CGROUP_V2 && sfs.f_type == CGROUP2_SUPER_MAGIC))
            return candidates[i];
    }
    return NULL;
}


static void
fixtureSetUp(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    f->mode = GPOINTER_TO_INT(data);
    if (geteuid() != 0) {
        g_test_skip("needs root to create cgroups and device nodes");
        return;
    }
    if (!(f->parent = testFindParent(f->mode))) {
        g_test_skip(f->mode == HD_CGROUP_V1 ?
                    "no cgroup v1 devices controller at /sys/fs/cgroup/devices" :
                    "no cgroup v2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup");
        return;
    }
    f->cgroup = g_strdup_printf("%s/hdtest-%d-%s", f->parent, (int)getpid(),
                                hdCgroupModeToString(f->mode));
    g_assert_cmpint(mkdir(f->cgroup, 0755), ==, 0);
    f->tmpdir = g_dir_make_tmp("hdcgroup-XXXXXX", &error);
    g_assert_no_error(error);
    f->node = g_build_filename(f->tmpdir, "node", NULL);
    g_assert_cmpint(mknod(f->node, S_IFCHR | 0666, makedev(TEST_MAJOR, TEST_MINOR)), ==, 0);
}


static void
fixtureTearDown(Fixture *f, gconstpointer data)
{
    if (f->cgroup)
        g_assert_cmpint(rmdir(f->cgroup), ==, 0);
    if (f->node)
        unlink(f->node);
    if (f->tmpdir)
        rmdir(f->tmpdir);
    g_free(f->cgroup);
    g_free(f->tmpdir);
    g_free(f->node);
}


/* errno of a child's open(@node, O_RDWR) inside @cgroup, 0 on success. */
static int
testOpenIn(const char *cgroup, const char *node)
{
    g_autofree char *procs = g_build_filename(cgroup, "cgroup.procs", NULL);
    int status;
    pid_t pid;

    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        char buf[32];
        int fd = open(procs, O_WRONLY);
        int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

        if (fd < 0 || write(fd, buf, len) != len)
            _exit(200);
        close(fd);
        if ((fd = open(node, O_RDWR)) < 0)
            _exit(errno);
        close(fd);
        _exit(0);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), !=, 200);
    return WEXITSTATUS(status);
}


static void
testAllowDeny(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(hdCgroup) cg = NULL;
    g_autoptr(hdCgroup) again = NULL;

    if (!f->cgroup)
        return;
    cg = hdCgroupOpen(f->cgroup, &error);
    g_assert_no_error(error);
    g_assert_cmpint(hdCgroupGetMode(cg), ==, f->mode);

    /* v1: start from a cgroup that may open nothing, as a domain's would.
     * v2: a device hostdev never decided about is not its business. */
    if (f->mode == HD_CGROUP_V1) {
        g_autofree char *deny = g_build_filename(f->cgroup, "devices.deny", NULL);

        g_assert_true(hdFileWriteAttr(deny, "a", &error));
        g_assert_cmpint(testOpenIn(f->cgroup, f->node), ==, EPERM);
    } else {
        g_assert_cmpint(testOpenIn(f->cgroup, f->node), ==, 0);
    }

    g_assert_true(hdCgroupAllowDevice(cg, TEST_MAJOR, TEST_MINOR, &error));
    g_assert_no_error(error);
    g_assert_cmpint(testOpenIn(f->cgroup, f->node), ==, 0);

    g_assert_true(hdCgroupDenyDevice(cg, TEST_MAJOR, TEST_MINOR, &error));
    g_assert_no_error(error);
    g_assert_cmpint(testOpenIn(f->cgroup, f->node), ==, EPERM);

    /* Another device of the same major is not affected (v2: not in the map). */
    if (f->mode == HD_CGROUP_V2) {
        g_autofree char *zero = g_build_filename(f->tmpdir, "zero", NULL);

        g_assert_cmpint(mknod(zero, S_IFCHR | 0666, makedev(1, 5)), ==, 0);
        g_assert_cmpint(testOpenIn(f->cgroup, zero), ==, 0);
        unlink(zero);
    }

    /* A restarted daemon finds the program and its map again. */
    again = hdCgroupOpen(f->cgroup, &error);
    g_assert_no_error(error);
    g_assert_true(hdCgroupAllowDevice(again, TEST_MAJOR, TEST_MINOR, &error));
    g_assert_no_error(error);
    g_assert_cmpint(testOpenIn(f->cgroup, f->node), ==, 0);
    g_assert_true(hdCgroupDenyDevice(again, TEST_MAJOR, TEST_MINOR, &error));
    g_assert_cmpint(testOpenIn(f->cgroup, f->node), ==, EPERM);
    if (f->mode == HD_CGROUP_V2)
        g_assert_true(hdCgroupHasProgram(cg));

    /* No program left behind. */
    g_assert_true(hdCgroupRemoveProgram(again, &error));
    g_assert_no_error(error);
    g_assert_false(hdCgroupHasProgram(cg));
}


static void
testNotACgroup(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(hdCgroup) cg = hdCgroupOpen("/tmp", &error);

    g_assert_null(cg);
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_clear_error(&error);
    g_assert_null(hdCgroupOpen("/nonexistent/cgroup", &error));
    g_assert_error(error, HD_SYSTEM_ERROR, ENOENT);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/cgroup/v1/allow-deny", Fixture, GINT_TO_POINTER(HD_CGROUP_V1),
               fixtureSetUp, testAllowDeny, fixtureTearDown);
    g_test_add("/cgroup/v2/allow-deny", Fixture, GINT_TO_POINTER(HD_CGROUP_V2),
               fixtureSetUp, testAllowDeny, fixtureTearDown);
    g_test_add_func("/cgroup/not-a-cgroup", testNotACgroup);
    return g_test_run();
}
