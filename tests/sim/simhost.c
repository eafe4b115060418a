/*
 * simhost.c: hostdev-simhost, the simulated host (docs/simhost.rst)
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread and taken by a
 * signal thread, which wakes every blocked handler (simModelShutdown), ends
 * the FUSE session and pokes the main thread out of fuse_session_loop_mt(); the
 * main thread then unmounts.  Handlers block for long (unbind waits for a
 * release, a hung probe for "unhang"), so the loop may run many threads.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "simfs.h"
#include "simnetlink.h"

/* Handlers may block; 64 GPU groups released in parallel need at least
 * one thread per blocked writer plus the ones serving everything else. */
#define SIM_MAX_THREADS 512
#define SIM_IDLE_THREADS 16

/* How often the signal thread pokes the main thread until the loop ends. */
#define SIM_POKE_INTERVAL_MS 50

typedef struct {
    struct fuse_session *session;
    simModel *model;
    pthread_t main_thread;
    sigset_t signals;
    gint loop_done;
} simSignals;


static void
simPokeHandler(int signum)
{
    /* Only interrupts sem_wait() in fuse_session_loop_mt(). */
}


static gpointer
simSignalThread(gpointer opaque)
{
    simSignals *sig = opaque;
    int signum = 0;

    sigwait(&sig->signals, &signum);
    if (g_atomic_int_get(&sig->loop_done))
        return NULL;

    simModelShutdown(sig->model);
    fuse_session_exit(sig->session);
    /* fuse_session_loop_mt() waits in sem_wait() for the session to end; a signal
     * without SA_RESTART gets it to look again.  Repeat in case the first
     * one came just before it started waiting. */
    while (!g_atomic_int_get(&sig->loop_done)) {
        pthread_kill(sig->main_thread, SIGUSR2);
        g_usleep(SIM_POKE_INTERVAL_MS * 1000);
    }
    return NULL;
}


static int
simServe(struct fuse_session *session, simModel *model)
{
    g_autoptr(GThread) thread = NULL;
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    struct sigaction poke = { .sa_handler = simPokeHandler };
    simSignals sig = { .session = session, .model = model, .main_thread = pthread_self() };
    int ret;

    sigaction(SIGUSR2, &poke, NULL);
    sigemptyset(&sig.signals);
    sigaddset(&sig.signals, SIGTERM);
    sigaddset(&sig.signals, SIGINT);
    sigaddset(&sig.signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sig.signals, NULL);
    thread = g_thread_new("sim-signals", simSignalThread, &sig);

    fuse_loop_cfg_set_max_threads(config, SIM_MAX_THREADS);
    fuse_loop_cfg_set_idle_threads(config, SIM_IDLE_THREADS);
    fuse_loop_cfg_set_clone_fd(config, 0);
    ret = fuse_session_loop_mt(session, config);
    fuse_loop_cfg_destroy(config);

    /* The loop may also end on its own (an external umount): stop the
     * signal thread then. */
    g_atomic_int_set(&sig.loop_done, 1);
    kill(getpid(), SIGTERM);
    g_thread_join(g_steal_pointer(&thread));
    return ret;
}


static gboolean
simDieWithParent(GError **error)
{
    pid_t parent = getppid();

    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "prctl(PR_SET_PDEATHSIG): %s", g_strerror(errno));
        return FALSE;
    }
    /* The parent may have died before prctl(). */
    if (getppid() != parent || parent == 1) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "the parent process is gone");
        return FALSE;
    }
    return TRUE;
}


static struct fuse_session *
simMount(simFs *fs, const char *argv0, const char *mountpoint, GError **error)
{
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_session *session;

    fuse_opt_add_arg(&args, argv0);
    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, "fsname=hostdev-simhost,subtype=simhost,default_permissions");
    /* Tests run as root but hostdev may drop privileges. */
    if (geteuid() == 0) {
        fuse_opt_add_arg(&args, "-o");
        fuse_opt_add_arg(&args, "allow_other");
    }

    session = fuse_session_new(&args, simFsOperations(), sizeof(struct fuse_lowlevel_ops), fs);
    fuse_opt_free_args(&args);
    if (!session) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "cannot set up FUSE");
        return NULL;
    }
    if (fuse_session_mount(session, mountpoint) != 0) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "cannot mount on %s (see the message above)", mountpoint);
        fuse_session_destroy(session);
        return NULL;
    }
    return session;
}


int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) context = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(simModel) model = NULL;
    g_autoptr(simFs) fs = NULL;
    g_autofree char *topology = NULL;
    g_autofree char *rtnl_socket = NULL;
    g_autoptr(simNetlink) rtnl = NULL;
    gboolean serialized = FALSE;
    gboolean die_with_parent = FALSE;
    int ready_fd = -1;
    struct fuse_session *session;
    int ret;
    GOptionEntry entries[] = {
        { "topology", 0, 0, G_OPTION_ARG_FILENAME, &topology,
          "The topology (JSON, see docs/simhost.rst)", "FILE" },
        { "serialized", 0, 0, G_OPTION_ARG_NONE, &serialized,
          "One global release/reset lock", NULL },
        { "ready-fd", 0, 0, G_OPTION_ARG_INT, &ready_fd,
          "Write \"ready\\n\" to fd N once the mount is usable", "N" },
        { "die-with-parent", 0, 0, G_OPTION_ARG_NONE, &die_with_parent,
          "Exit (and unmount) when the parent dies", NULL },
        { "rtnl-socket", 0, 0, G_OPTION_ARG_FILENAME, &rtnl_socket,
          "Serve rtnetlink there (for simnl-shim.so)", "PATH" },
        { NULL }
    };

    context = g_option_context_new("MOUNTPOINT - the simulated host of hostdev");
    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("hostdev-simhost: %s\n", error->message);
        return 2;
    }
    if (argc != 2 || !topology) {
        g_printerr("hostdev-simhost: usage: hostdev-simhost --topology FILE "
                   "[--serialized] [--ready-fd N] [--die-with-parent] "
                   "[--rtnl-socket PATH] MOUNTPOINT\n");
        return 2;
    }
    if (die_with_parent && !simDieWithParent(&error)) {
        g_printerr("hostdev-simhost: --die-with-parent: %s\n", error->message);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    if (!(model = simModelNewFromFile(topology, &error))) {
        g_printerr("hostdev-simhost: topology %s: %s\n", topology, error->message);
        return 1;
    }
    if (serialized && !simModelControl(model, "serialized on", strlen("serialized on"),
                                       &error)) {
        g_printerr("hostdev-simhost: %s\n", error->message);
        return 1;
    }

    if (rtnl_socket && !(rtnl = simNetlinkStart(model, rtnl_socket, &error))) {
        g_printerr("hostdev-simhost: %s\n", error->message);
        return 1;
    }

    fs = simFsNew(model, ready_fd);
    if (!(session = simMount(fs, argv[0], argv[1], &error))) {
        g_printerr("hostdev-simhost: %s\n", error->message);
        return 1;
    }

    ret = simServe(session, model);
    g_clear_pointer(&rtnl, simNetlinkStop);
    simModelShutdown(model);
    fuse_session_unmount(session);
    fuse_session_destroy(session);
    if (ret != 0)
        g_printerr("hostdev-simhost: the FUSE loop failed (%d)\n", ret);
    return ret == 0 ? 0 : 1;
}
