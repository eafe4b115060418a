/*
 * hostdevd.c: the hostdev daemon (docs/hostdevd.rst)
 *
 * One daemon per host owns the manager and the security manager above it,
 * and serves hostdevctl and management stacks on a UNIX socket
 * (docs/protocol.rst).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <grp.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
# include <malloc.h>
#endif

#include <glib-unix.h>
#include <glib/gi18n.h>

#include "hostdev/error.h"
#include "hdd.h"

#define HDD_DEFAULT_SOCKET "/run/hostdevd.sock"
#define HDD_DEFAULT_MAX_CLIENTS 256
#define HDD_DEFAULT_HANDSHAKE_TIMEOUT 10

/* glibc's malloc arenas: one, shared by every thread (see hddMallocSetup). */
#define HDD_MALLOC_ARENAS 1

static GLogLevelFlags hddLogMax = G_LOG_LEVEL_WARNING;
static gboolean hddQuitting;


static void
hddLog(const char *domain, GLogLevelFlags level, const char *message, gpointer opaque)
{
    const char *name = "debug";

    if ((level & G_LOG_LEVEL_MASK) > hddLogMax)
        return;
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
        name = "error";
    else if (level & G_LOG_LEVEL_WARNING)
        name = "warning";
    else if (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO))
        name = "info";
    fprintf(stderr, "hostdevd: %s: %s\n", name, message);
}


static gboolean
hddSetLogLevel(const char *level, GError **error)
{
    if (g_strcmp0(level, "error") == 0)
        hddLogMax = G_LOG_LEVEL_CRITICAL;
    else if (g_strcmp0(level, "warning") == 0)
        hddLogMax = G_LOG_LEVEL_WARNING;
    else if (g_strcmp0(level, "info") == 0)
        hddLogMax = G_LOG_LEVEL_INFO;
    else if (g_strcmp0(level, "debug") == 0)
        hddLogMax = G_LOG_LEVEL_DEBUG;
    else {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("unknown log level '%1$s' (error, warning, info, debug)"), level);
        return FALSE;
    }
    return TRUE;
}


/* Manager events become protocol events (any thread). */
static void
hddManagerEvent(hdManager *mgr, const hdEvent *event, gpointer opaque)
{
    static const char *const names[] = {
        [HD_EVENT_DEVICE_ASSIGNED] = "DEVICE_ASSIGNED",
        [HD_EVENT_DEVICE_RELEASED] = "DEVICE_RELEASED",
        [HD_EVENT_GROUP_GIVEN_BACK] = "GROUP_GIVEN_BACK",
        [HD_EVENT_GIVE_BACK_FAILED] = "GIVE_BACK_FAILED",
    };
    g_autoptr(JsonBuilder) b = json_builder_new();

    if ((guint)event->type >= G_N_ELEMENTS(names))
        return;
    json_builder_begin_object(b);
    if (event->domain) {
        json_builder_set_member_name(b, "domain");
        json_builder_add_string_value(b, event->domain);
    }
    if (event->type != HD_EVENT_GIVE_BACK_FAILED) {
        char addr[HD_PCI_ADDRESS_STRLEN];

        json_builder_set_member_name(b, "address");
        json_builder_add_string_value(b, hdPCIAddressFormat(&event->addr, addr));
    }
    json_builder_set_member_name(b, "group");
    json_builder_add_int_value(b, event->group);
    if (event->message) {
        json_builder_set_member_name(b, "message");
        json_builder_add_string_value(b, event->message);
    }
    json_builder_end_object(b);
    if (event->type == HD_EVENT_GIVE_BACK_FAILED)
        g_warning(_("group %1$u: %2$s"), event->group, event->message);
    hddEmitEvent(names[event->type], json_builder_get_root(b));
}


/* Logged, and an event for the clients: what failed is said as it is (a
 * setup that failed fails the domain's assignment, a cleanup that failed
 * is retried). */
static void
hddSecurityReport(hdSecurityManager *sec, hdSecurityProblem problem, const char *domain,
                  const GError *error, gpointer opaque)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    hdSecurityProblemLog(problem, domain, error);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "kind");
    json_builder_add_string_value(b, hdSecurityProblemToString(problem));
    if (domain) {
        json_builder_set_member_name(b, "domain");
        json_builder_add_string_value(b, domain);
    }
    json_builder_set_member_name(b, "message");
    json_builder_add_string_value(b, error->message);
    json_builder_end_object(b);
    hddEmitEvent("SECURITY_PROBLEM", json_builder_get_root(b));
}


static gboolean
hddMaybeQuit(gpointer opaque)
{
    hddDaemon *dmn = opaque;

    /* Running operations finish first: their replies and durable state
     * are worth the wait; a second signal does not wait. */
    if (dmn->ops > 0 || dmn->queries > 0 || dmn->sweeping)
        return G_SOURCE_CONTINUE;
    g_main_loop_quit(dmn->loop);
    return G_SOURCE_REMOVE;
}


static gboolean
hddOnSignal(gpointer opaque)
{
    hddDaemon *dmn = opaque;

    if (hddQuitting) {
        g_warning("%s", _("second signal: exiting now (the state is durable)"));
        _exit(1);
    }
    hddQuitting = TRUE;
    g_info("shutting down");
    hddServerDrain();
    if (hddMaybeQuit(dmn) == G_SOURCE_CONTINUE)
        g_timeout_add(50, hddMaybeQuit, dmn);
    return G_SOURCE_CONTINUE;
}


/* hostdevd's threads (request workers, a monitor per domain, destroy's
 * workers) come and go, and glibc gives each new one an arena of its own
 * until there are 8 per core.  hddTrim's malloc_trim() gives back the
 * free pages inside every arena, but only the main arena's free top: a
 * thread's arena keeps its top resident up to the trim threshold (128 KiB
 * or more), so the daemon's RSS crept up as arena after arena grew (the
 * soak: 16 arenas on 2 cores, some 100 KiB every 1,000 operations) while
 * the memory in use did not.  hostdevd's threads wait on the kernel and
 * on QEMU, not on malloc: one arena costs them nothing measurable, and
 * malloc_trim() then gives back all the daemon's free memory.  Set
 * before any thread exists; the administrator's own choice
 * (MALLOC_ARENA_MAX, or glibc.malloc.arena_max in GLIBC_TUNABLES) wins. */
static void
hddMallocSetup(void)
{
#ifdef __GLIBC__
    const char *tunables = g_getenv("GLIBC_TUNABLES");

    if (g_getenv("MALLOC_ARENA_MAX") ||
        (tunables && strstr(tunables, "glibc.malloc.arena_max")))
        return;
    mallopt(M_ARENA_MAX, HDD_MALLOC_ARENAS);
#endif
}


int
main(int argc, char **argv)
{
    g_autofree char *root = NULL;
    g_autofree char *state_dir = NULL;
    g_autofree char *socket_path = NULL;
    g_autofree char *group = NULL;
    g_autofree char *log_level = NULL;
    gboolean foreground = FALSE;
    gint sweep_ms = 500;
    gint max_clients = HDD_DEFAULT_MAX_CLIENTS;
    gint handshake_timeout = HDD_DEFAULT_HANDSHAKE_TIMEOUT;
    gint unplug_timeout_ms = 0;
    gint max_monitors = HDD_MAX_MONITORS;
    GOptionEntry entries[] = {
        { "root", 0, 0, G_OPTION_ARG_FILENAME, &root,
          N_("Root of sysfs and /dev (default /; a simulated host's mount point)"), "DIR" },
        { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir,
          N_("Durable state (default " HD_DEFAULT_STATE_DIR ")"), "DIR" },
        { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path,
          N_("Control socket (default " HDD_DEFAULT_SOCKET ")"), "PATH" },
        { "group", 0, 0, G_OPTION_ARG_STRING, &group,
          N_("Group allowed on the socket besides root (mode 0660)"), "GROUP" },
        { "log-level", 0, 0, G_OPTION_ARG_STRING, &log_level,
          N_("error, warning (default), info or debug"), "LEVEL" },
        { "max-clients", 0, 0, G_OPTION_ARG_INT, &max_clients,
          N_("Connections at once (default 256; root may open 16 more)"), "N" },
        { "handshake-timeout", 0, 0, G_OPTION_ARG_INT, &handshake_timeout,
          N_("Seconds a connection has to negotiate (default 10)"), "SEC" },
        { "foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground,
          N_("Do not detach (systemd, tests)"), NULL },
        { "unplug-timeout", 0, 0, G_OPTION_ARG_INT, &unplug_timeout_ms,
          N_("How long detach-device waits for the guest by default (0: 10 s + 5 s a device)"),
          "MS" },
        { "max-monitors", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &max_monitors,
          N_("Domains with a QEMU monitor at once"), "N" },
        { "sweep-ms", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &sweep_ms,
          N_("Retry pending give-backs this often"), "MS" },
        { NULL },
    };
    g_autoptr(GOptionContext) octx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(hdHost) host = NULL;
    g_autoptr(GMainLoop) loop = NULL;
    hddConfig config = { 0 };
    hddDaemon dmn = { .config = &config };
    int ret = 1;

    hddMallocSetup();
    setlocale(LC_ALL, "");
    bindtextdomain(GETTEXT_PACKAGE, LOCALEDIR);
    textdomain(GETTEXT_PACKAGE);
    g_log_set_default_handler(hddLog, NULL);

    /* Step 1: options. */
    octx = g_option_context_new(NULL);
    g_option_context_set_summary(octx, _("The hostdev daemon: VFIO PCI passthrough manager."));
    g_option_context_add_main_entries(octx, entries, GETTEXT_PACKAGE);
    if (!g_option_context_parse(octx, &argc, &argv, &error) ||
        (log_level && !hddSetLogLevel(log_level, &error)))
        goto cleanup;
    if (argc > 1) {
        hdErrorSet(&error, HD_ERROR_INVALID_ARG, _("unexpected argument '%1$s'"), argv[1]);
        goto cleanup;
    }
    config.root = g_strdup(root ? root : "/");
    config.state_dir = g_strdup(state_dir ? state_dir : HD_DEFAULT_STATE_DIR);
    config.socket_path = g_strdup(socket_path ? socket_path : HDD_DEFAULT_SOCKET);
    config.sweep_ms = sweep_ms > 0 ? sweep_ms : 500;
    if (unplug_timeout_ms < 0 || (guint)unplug_timeout_ms > HDD_MAX_UNPLUG_TIMEOUT_MS) {
        hdErrorSet(&error, HD_ERROR_INVALID_ARG,
                   _("--unplug-timeout must be 0 to %1$u ms"), HDD_MAX_UNPLUG_TIMEOUT_MS);
        goto cleanup;
    }
    config.unplug_timeout_ms = unplug_timeout_ms;
    if (max_clients < 1 || handshake_timeout < 1) {
        hdErrorSet(&error, HD_ERROR_INVALID_ARG, "%s",
                   _("--max-clients and --handshake-timeout must be at least 1"));
        goto cleanup;
    }
    config.max_clients = max_clients;
    config.handshake_timeout = handshake_timeout;
    hddMonitorSetMax(MAX(max_monitors, 0));
    if (group) {
        struct group *gr = getgrnam(group);

        if (!gr) {
            hdErrorSet(&error, HD_ERROR_INVALID_ARG, _("no group named '%1$s'"), group);
            goto cleanup;
        }
        config.group = g_strdup(group);
        config.gid = gr->gr_gid;
    }

    /* Step 2: detach before any thread exists. */
    if (!foreground && daemon(0, 0) < 0) {
        hdErrorSetSystem(&error, errno, "%s", _("cannot detach"));
        goto cleanup;
    }

    /* Step 3: the manager reconciles its durable state: give-backs an
     * earlier daemon left half done are finished here or by the sweep. */
    host = hdHostNew(config.root);
    if (!(dmn.mgr = hdManagerOpen(host, config.state_dir, &error)))
        goto cleanup;
    hdManagerAddEventHandler(dmn.mgr, hddManagerEvent, &dmn);
    if (!(dmn.sec = hdSecurityManagerNew(dmn.mgr, config.state_dir, &error)))
        goto cleanup;
    hdSecurityManagerSetReportFunc(dmn.sec, hddSecurityReport, &dmn);
    dmn.domains = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                        (GDestroyNotify)hddDomainFree);
    if (!hddDomainsLoad(&dmn, &error))
        goto cleanup;

    /* Step 4: serve. */
    loop = g_main_loop_new(NULL, FALSE);
    dmn.loop = loop;
    if (!hddServerStart(&dmn, &error))
        goto cleanup;
    hddStartSweeper(&dmn);
    g_unix_signal_add(SIGTERM, hddOnSignal, &dmn);
    g_unix_signal_add(SIGINT, hddOnSignal, &dmn);
    g_info("listening on %s (root %s, state %s)", config.socket_path, config.root,
           config.state_dir);
    g_main_loop_run(loop);
    ret = 0;

 cleanup:
    if (error)
        fprintf(stderr, "hostdevd: %s\n", error->message);
    hddServerStop();
    hddWatcherFree(dmn.watcher);
    if (dmn.domains)
        g_hash_table_unref(dmn.domains);
    /* Their monitors' threads end in a moment, unless one waits for a
     * QEMU that does not answer: the state is durable, no need to wait. */
    if (!hddMonitorsWait(2000))
        g_info("a QEMU monitor's thread is still connecting; exiting anyway");
    if (dmn.sec)
        hdSecurityManagerFree(dmn.sec);
    if (dmn.mgr)
        hdManagerFree(dmn.mgr);
    g_free(config.root);
    g_free(config.state_dir);
    g_free(config.socket_path);
    g_free(config.group);
    return ret;
}
