/*
 * hdtest-sim.c: run a simulated host for one test
 *
 * The daemon's stdout and stderr go to an unlinked temporary file: it is
 * shown when the daemon fails to start, exits badly (a sanitizer report
 * makes it exit non-zero) or with --verbose.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hdinternal.h"
#include "hdtest-sim.h"

/* How long the daemon may take to mount, and to exit after SIGTERM. */
#define HD_SIM_START_TIMEOUT_MS 10000
#define HD_SIM_STOP_TIMEOUT_MS 10000

/* How long a daemon that closed its ready pipe may take to exit. */
#define HD_SIM_EXIT_GRACE_MS 2000

/* How often the wait helpers look at the state. */
#define HD_SIM_POLL_MS 5

/* The fd number the daemon writes "ready" to. */
#define HD_SIM_READY_FD 3

struct _hdSimHost {
    GPid pid;
    char *topology;
    char *root;                 /* the mount point */
    char *rtnl;                 /* its rtnetlink socket, beside it */
    int output_fd;              /* the daemon's stdout and stderr */
    gboolean exited;            /* reaped; status is valid */
    int status;
};


static char *hdTestSkipReason;


const char *
hdTestSetup(int *argc, char ***argv)
{
    const char *simhost = g_getenv("HD_SIMHOST");
    g_auto(hdFd) fd = -1;

    g_test_init(argc, argv, NULL);

    /* Mounts made by the test and its daemons vanish with the test. */
    if (geteuid() == 0 && unshare(CLONE_NEWNS) == 0)
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);

    g_clear_pointer(&hdTestSkipReason, g_free);
    if ((fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)) < 0)
        hdTestSkipReason = g_strdup_printf("cannot open /dev/fuse: %s", g_strerror(errno));
    else if (!simhost || !*simhost)
        hdTestSkipReason = g_strdup("HD_SIMHOST is not set "
                                    "(hostdev-simhost is not built without libfuse3)");
    else if (!g_file_test(simhost, G_FILE_TEST_IS_EXECUTABLE))
        hdTestSkipReason = g_strdup_printf("HD_SIMHOST=%s is not an executable", simhost);
    else if (geteuid() != 0 && !g_find_program_in_path("fusermount3"))
        hdTestSkipReason = g_strdup("fusermount3 is needed to mount as non-root");
    return hdTestSkipReason;
}


static char *
hdSimTopologyPath(const char *topology, GError **error)
{
    const char *dir = g_getenv("HD_TOPOLOGY_DIR");

    if (strchr(topology, '/') || g_str_has_suffix(topology, ".json"))
        return g_strdup(topology);
    if (!dir) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   "HD_TOPOLOGY_DIR is not set: cannot find topology '%s'", topology);
        return NULL;
    }
    return g_strdup_printf("%s/%s.json", dir, topology);
}


/* What the daemon printed so far. */
static char *
hdSimHostOutput(hdSimHost *sim)
{
    g_autoptr(GString) out = g_string_new(NULL);
    char buf[4096];
    off_t offset = 0;
    ssize_t got;

    while ((got = pread(sim->output_fd, buf, sizeof(buf), offset)) > 0) {
        g_string_append_len(out, buf, got);
        offset += got;
    }
    return g_string_free(g_steal_pointer(&out), FALSE);
}


static char *
hdSimDescribeStatus(int status)
{
    if (WIFEXITED(status))
        return g_strdup_printf("exited with status %d", WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return g_strdup_printf("was killed by signal %d (%s)", WTERMSIG(status),
                               g_strsignal(WTERMSIG(status)));
    return g_strdup_printf("ended with wait status 0x%x", status);
}


static gboolean
hdSimHostReap(hdSimHost *sim, int flags)
{
    pid_t got;

    if (sim->exited)
        return TRUE;
    do {
        got = waitpid(sim->pid, &sim->status, flags);
    } while (got < 0 && errno == EINTR);
    if (got == sim->pid || (got < 0 && errno == ECHILD))
        sim->exited = TRUE;
    return sim->exited;
}


gboolean
hdSimHostWaitExit(hdSimHost *sim, guint timeout_ms, int *wait_status)
{
    gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

    while (!hdSimHostReap(sim, WNOHANG)) {
        if (g_get_monotonic_time() >= deadline)
            return FALSE;
        g_usleep(HD_SIM_POLL_MS * 1000);
    }
    if (wait_status)
        *wait_status = sim->status;
    return TRUE;
}


const char *
hdSimHostRtnlSocket(hdSimHost *sim)
{
    return sim->rtnl;
}


GPid
hdSimHostPid(hdSimHost *sim)
{
    return sim->pid;
}


/* Whatever happened to the daemon, nothing stays mounted on sim->root. */
static void
hdSimHostUnmount(hdSimHost *sim)
{
    if (geteuid() == 0) {
        umount2(sim->root, MNT_DETACH);
    } else {
        const char *argv[] = { "fusermount3", "-u", "-q", "-z", sim->root, NULL };

        g_spawn_sync(NULL, (char **) argv, NULL,
                     G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
                     G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    }
}


static void
hdSimHostFree(hdSimHost *sim)
{
    if (sim->root) {
        hdSimHostUnmount(sim);
        if (rmdir(sim->root) < 0 && errno != ENOENT)
            g_printerr("cannot remove %s: %s\n", sim->root, g_strerror(errno));
    }
    if (sim->rtnl)
        unlink(sim->rtnl);
    if (sim->output_fd >= 0)
        close(sim->output_fd);
    g_free(sim->topology);
    g_free(sim->root);
    g_free(sim->rtnl);
    g_free(sim);
}


static gboolean
hdSimHostSpawn(hdSimHost *sim, const char *topology_path,
               const char *const *extra_args, int ready_fd, GError **error)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *fd_arg = g_strdup_printf("%d", HD_SIM_READY_FD);
    int source_fds[] = { ready_fd };
    int target_fds[] = { HD_SIM_READY_FD };

    g_ptr_array_add(argv, (char *) g_getenv("HD_SIMHOST"));
    g_ptr_array_add(argv, (char *) "--topology");
    g_ptr_array_add(argv, (char *) topology_path);
    g_ptr_array_add(argv, (char *) "--die-with-parent");
    g_ptr_array_add(argv, (char *) "--ready-fd");
    g_ptr_array_add(argv, fd_arg);
    g_ptr_array_add(argv, (char *) "--rtnl-socket");
    g_ptr_array_add(argv, sim->rtnl);
    for (; extra_args && *extra_args; extra_args++)
        g_ptr_array_add(argv, (char *) *extra_args);
    g_ptr_array_add(argv, sim->root);
    g_ptr_array_add(argv, NULL);

    return g_spawn_async_with_pipes_and_fds(NULL, (const char *const *) argv->pdata, NULL,
                                            G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                                            -1, sim->output_fd, sim->output_fd,
                                            source_fds, target_fds, 1,
                                            &sim->pid, NULL, NULL, NULL, error);
}


/* TRUE once the daemon wrote "ready"; FALSE if it exited or timed out. */
static gboolean
hdSimHostWaitReady(int fd)
{
    gint64 deadline = g_get_monotonic_time() + HD_SIM_START_TIMEOUT_MS * 1000;
    char buf[16];
    gsize have = 0;

    while (have < strlen("ready\n")) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        ssize_t got;

        if (left <= 0 || poll(&pfd, 1, left) == 0)
            return FALSE;
        got = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return FALSE;
        have += got;
    }
    return strncmp(buf, "ready\n", have) == 0;
}


hdSimHost *
hdSimHostStart(const char *topology, const char *const *extra_args, GError **error)
{
    g_autofree char *path = NULL;
    g_autofree char *output_name = NULL;
    g_autofree char *output = NULL;
    g_autofree char *how = NULL;
    g_auto(hdFd) ready_read = -1;
    g_auto(hdFd) ready_write = -1;
    hdSimHost *sim;
    int fds[2];

    if (!(path = hdSimTopologyPath(topology, error)))
        return NULL;

    sim = g_new0(hdSimHost, 1);
    sim->pid = -1;
    sim->output_fd = -1;
    sim->topology = g_strdup(topology);
    if (!(sim->root = g_dir_make_tmp("hdsim-XXXXXX", error)))
        goto error;
    sim->rtnl = g_strdup_printf("%s.rtnl", sim->root);
    if ((sim->output_fd = g_file_open_tmp("hdsim-output-XXXXXX", &output_name, error)) < 0)
        goto error;
    unlink(output_name);
    fcntl(sim->output_fd, F_SETFD, FD_CLOEXEC);
    if (pipe2(fds, O_CLOEXEC) < 0) {
        hdErrorSetSystem(error, errno, "cannot create a pipe");
        goto error;
    }
    ready_read = fds[0];
    ready_write = fds[1];

    if (!hdSimHostSpawn(sim, path, extra_args, ready_write, error))
        goto error;
    close(ready_write);
    ready_write = -1;

    if (hdSimHostWaitReady(ready_read))
        return sim;

    /* It closed the pipe (by exiting, as a rule) or took too long. */
    if (!hdSimHostWaitExit(sim, HD_SIM_EXIT_GRACE_MS, NULL)) {
        kill(sim->pid, SIGKILL);
        hdSimHostReap(sim, 0);
        how = g_strdup_printf("did not become ready within %d s",
                              HD_SIM_START_TIMEOUT_MS / 1000);
    } else {
        how = hdSimDescribeStatus(sim->status);
    }
    output = hdSimHostOutput(sim);
    hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
               "hostdev-simhost (topology %s, mount point %s) %s:\n%s",
               path, sim->root, how, output);

 error:
    if (sim->pid > 0 && !sim->exited) {
        kill(sim->pid, SIGKILL);
        hdSimHostReap(sim, 0);
    }
    hdSimHostFree(sim);
    return NULL;
}


void
hdSimHostStop(hdSimHost *sim)
{
    g_autofree char *output = NULL;
    g_autofree char *how = NULL;
    gboolean failed = FALSE;

    if (!sim)
        return;

    if (!sim->exited) {
        kill(sim->pid, SIGTERM);
        if (!hdSimHostWaitExit(sim, HD_SIM_STOP_TIMEOUT_MS, NULL)) {
            kill(sim->pid, SIGKILL);
            hdSimHostReap(sim, 0);
            how = g_strdup_printf("did not exit within %d s of SIGTERM",
                                  HD_SIM_STOP_TIMEOUT_MS / 1000);
            failed = TRUE;
        }
    }
    if (!how) {
        how = hdSimDescribeStatus(sim->status);
        failed = !WIFEXITED(sim->status) || WEXITSTATUS(sim->status) != 0;
    }

    output = hdSimHostOutput(sim);
    if (failed) {
        g_printerr("hostdev-simhost (topology %s, %s) %s; its output:\n%s\n",
                   sim->topology, sim->root, how, output);
        if (g_test_initialized())
            g_test_fail();
    } else if (*output && g_test_initialized() && g_test_verbose()) {
        g_printerr("hostdev-simhost (topology %s) said:\n%s\n", sim->topology, output);
    }
    hdSimHostFree(sim);
}


const char *
hdSimHostRoot(hdSimHost *sim)
{
    return sim->root;
}


char *
hdSimHostPath(hdSimHost *sim, const char *relative)
{
    return g_build_filename(sim->root, relative, NULL);
}


gboolean
hdSimHostCtl(hdSimHost *sim, const char *command, GError **error)
{
    g_autofree char *path = hdSimHostPath(sim, ".sim/ctl");
    g_auto(hdFd) fd = -1;
    ssize_t len = strlen(command);

    if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
        hdErrorSetSystem(error, errno, "cannot open %s", path);
        return FALSE;
    }
    if (write(fd, command, len) != len) {
        hdErrorSetSystem(error, errno, "cannot write '%s' to %s", command, path);
        return FALSE;
    }
    return TRUE;
}


/* A whole file, read until EOF (the .sim files report size 0). */
static char *
hdSimHostRead(hdSimHost *sim, const char *relative, GError **error)
{
    g_autofree char *path = hdSimHostPath(sim, relative);
    g_autoptr(GString) content = g_string_new(NULL);
    g_auto(hdFd) fd = -1;
    char buf[8192];
    ssize_t got;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        hdErrorSetSystem(error, errno, "cannot open %s", path);
        return NULL;
    }
    while ((got = read(fd, buf, sizeof(buf))) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            hdErrorSetSystem(error, errno, "cannot read %s", path);
            return NULL;
        }
        g_string_append_len(content, buf, got);
    }
    return g_string_free(g_steal_pointer(&content), FALSE);
}


JsonNode *
hdSimHostState(hdSimHost *sim, GError **error)
{
    g_autofree char *content = hdSimHostRead(sim, ".sim/state", error);

    if (!content)
        return NULL;
    return json_from_string(content, error);
}


JsonArray *
hdSimHostEvents(hdSimHost *sim, GError **error)
{
    g_autofree char *content = hdSimHostRead(sim, ".sim/events", error);
    g_autoptr(JsonArray) events = json_array_new();
    g_auto(GStrv) lines = NULL;
    guint i;

    if (!content)
        return NULL;
    lines = g_strsplit(content, "\n", -1);
    for (i = 0; lines[i]; i++) {
        JsonNode *event;

        if (!*lines[i])
            continue;
        if (!(event = json_from_string(lines[i], error)))
            return NULL;
        json_array_add_element(events, event);
    }
    return g_steal_pointer(&events);
}


guint
hdSimHostViolations(hdSimHost *sim)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = hdSimHostState(sim, &error);

    g_assert_no_error(error);
    return json_object_get_int_member(json_node_get_object(state), "violations");
}


/* The member @key == @value of the array @array of the state. */
static JsonObject *
hdSimStateFind(JsonNode *state, const char *array, const char *key, JsonNode *value)
{
    JsonArray *items = json_object_get_array_member(json_node_get_object(state), array);
    guint i;

    for (i = 0; i < json_array_get_length(items); i++) {
        JsonObject *item = json_array_get_object_element(items, i);

        if (json_node_equal(json_object_get_member(item, key), value))
            return item;
    }
    return NULL;
}


char *
hdSimHostDriverOf(hdSimHost *sim, const char *address)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = hdSimHostState(sim, &error);
    g_autoptr(JsonNode) key = json_node_init_string(json_node_alloc(), address);
    JsonObject *dev;

    g_assert_no_error(error);
    if (!(dev = hdSimStateFind(state, "devices", "address", key)))
        return NULL;
    return g_strdup(json_object_get_string_member(dev, "driver"));
}


gboolean
hdSimHostWaitGroupFree(hdSimHost *sim, int group, guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
    g_autoptr(JsonNode) key = json_node_init_int(json_node_alloc(), group);

    for (;;) {
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) state = hdSimHostState(sim, &error);
        JsonObject *item;

        g_assert_no_error(error);
        item = hdSimStateFind(state, "groups", "group", key);
        if (!item || !json_object_get_boolean_member(item, "owned"))
            return TRUE;
        if (g_get_monotonic_time() >= deadline)
            return FALSE;
        g_usleep(HD_SIM_POLL_MS * 1000);
    }
}


gboolean
hdSimHostWaitEvent(hdSimHost *sim, const char *event, const char *address,
                   guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
    guint i;

    for (;;) {
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonArray) events = hdSimHostEvents(sim, &error);

        g_assert_no_error(error);
        for (i = 0; i < json_array_get_length(events); i++) {
            JsonObject *item = json_array_get_object_element(events, i);

            if (g_strcmp0(json_object_get_string_member(item, "event"), event) == 0 &&
                (!address ||
                 g_strcmp0(json_object_get_string_member(item, "device"), address) == 0))
                return TRUE;
        }
        if (g_get_monotonic_time() >= deadline)
            return FALSE;
        g_usleep(HD_SIM_POLL_MS * 1000);
    }
}
