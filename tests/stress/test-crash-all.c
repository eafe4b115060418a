/*
 * test-crash-all.c: SIGKILL at every crash point of destroy and of several
 * domains sharing the host
 *
 * Extends tests/manager/test-crash.c (one domain, prepare and release) to
 * two scenarios, each a list of mgr-tool invocations (one process each):
 *
 *   destroy   vm1 gets a whole GPU group and the NIC; a stand-in QEMU holds
 *             their groups; destroy vm1 (QEMU ended, files adopted, groups
 *             given back in parallel).
 *   domains   vm1 a whole GPU group, vm2 the 4-function card, vm3 the
 *             bridged NIC pair and the NIC (a first try fails on an
 *             injected vfio-pci probe failure and rolls back), each with
 *             its QEMU; then a
 *             hot-unplug from vm2 (its QEMU still holds the group), vm1's
 *             QEMU dies and vm1 is released, vm3 is destroyed, vm2's QEMU
 *             dies and vm2 is released.
 *
 * Each invocation first runs once with HD_CRASH_TRACE, which enumerates
 * the crash points it passes (name and hit count).  Then for each
 * (invocation, point), on a fresh simulated host: replay the invocations
 * before it, run it with HD_CRASH_AT, check the process died of SIGKILL,
 * restart (reconcile) and check the state is consistent (active devices on
 * vfio-pci, no group split between domains, untracked devices on their
 * original drivers, an interrupted prepare rolled back as a whole or
 * committed as a whole); then end every domain (QEMUs killed, domains
 * released, pending groups given back) and check every device is on its
 * original driver, nothing is tracked and no viability violation happened.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "mgrtest.h"
#include "stresstest.h"

#define CRASH_DOMAINS 3

typedef struct {
    /* mgr-tool verb; "qemu", "crash": start, kill its QEMU; "fault": a
     * fault on the domain's last device (simulated host's ctl) */
    const char *verb;
    const char *domain;
    /* prepare: "whole-group", or "fails" (a fault makes it roll back);
     * release: "half"; fault: the fault */
    const char *arg;
} CrashStep;

typedef struct {
    const char *name;
    const char *assign[CRASH_DOMAINS];  /* per domain: driver whose devices it gets */
    const CrashStep *steps;
} CrashScenario;

typedef struct {
    const CrashScenario *scenario;
    hdSimHost *sim;
    hdHost *host;
    char *state_dir;
    char *xml[CRASH_DOMAINS];
    GPtrArray *addrs[CRASH_DOMAINS];    /* char *: devices asked for, per domain */
    pid_t qemu[CRASH_DOMAINS];
    GHashTable *original;               /* address -> driver */
} CrashRun;

static const CrashStep destroySteps[] = {
    { "prepare", "vm1", "whole-group" },
    { "qemu", "vm1", NULL },
    { "destroy", "vm1", NULL },
    { NULL, NULL, NULL },
};

static const CrashStep domainSteps[] = {
    { "prepare", "vm1", "whole-group" },
    { "prepare", "vm2", NULL },
    { "fault", "vm3", "probe fail vfio-pci" },
    { "prepare", "vm3", "fails" },
    { "fault", "vm3", "probe ok" },
    { "prepare", "vm3", NULL },
    { "qemu", "vm1", NULL },
    { "qemu", "vm2", NULL },
    { "qemu", "vm3", NULL },
    { "release", "vm2", "half" },
    { "crash", "vm1", NULL },
    { "release-domain", "vm1", NULL },
    { "destroy", "vm3", NULL },
    { "crash", "vm2", NULL },
    { "release-domain", "vm2", NULL },
    { NULL, NULL, NULL },
};

static const CrashScenario scenarios[] = {
    { "destroy", { "nvidia,e1000e", NULL, NULL }, destroySteps },
    { "domains", { "nvidia", "igb", "e1000,e1000e" }, domainSteps },
};


static int
crashDomainIndex(const char *domain)
{
    return domain[2] - '1';
}


static void
crashWriteDomain(CrashRun *run, int d, const char *drivers)
{
    g_auto(GStrv) list = g_strsplit(drivers, ",", -1);
    g_autoptr(GString) xml = g_string_new(NULL);
    guint i;
    guint j;

    g_string_append_printf(xml, "<domain><name>vm%d</name><devices>\n", d + 1);
    run->addrs[d] = g_ptr_array_new_with_free_func(g_free);
    for (i = 0; list[i]; i++) {
        g_autoptr(GPtrArray) on = mgrtestDevicesOn(run->sim, list[i]);

        /* Only the GPU of its group: the audio sibling follows (whole group). */
        if (g_str_equal(list[i], "nvidia"))
            g_ptr_array_set_size(on, 1);
        for (j = 0; j < on->len; j++) {
            hdPCIAddress a = mgrtestAddr(g_ptr_array_index(on, j));

            g_ptr_array_add(run->addrs[d], g_strdup(g_ptr_array_index(on, j)));
            g_string_append_printf(xml,
                                   "<hostdev mode='subsystem' type='pci' managed='yes'>"
                                   "<source><address domain='0x%04x' bus='0x%02x' "
                                   "slot='0x%02x' function='0x%x'/></source></hostdev>\n",
                                   a.domain, a.bus, a.slot, a.function);
        }
    }
    g_string_append(xml, "</devices></domain>\n");
    run->xml[d] = g_strdup_printf("%s/vm%d.xml", run->state_dir, d + 1);
    g_assert_true(g_file_set_contents(run->xml[d], xml->str, -1, NULL));
}


static void
crashRunStart(CrashRun *run, const CrashScenario *scenario)
{
    g_autoptr(GError) error = NULL;
    guint d;

    run->scenario = scenario;
    run->sim = hdSimHostStart("small", NULL, &error);
    g_assert_no_error(error);
    run->host = hdHostNew(hdSimHostRoot(run->sim));
    run->state_dir = g_dir_make_tmp("hdcrashall-XXXXXX", &error);
    g_assert_no_error(error);
    for (d = 0; d < CRASH_DOMAINS; d++) {
        if (scenario->assign[d])
            crashWriteDomain(run, d, scenario->assign[d]);
    }
    run->original = mgrtestDriverMap(run->sim);
}


static void
crashKillQemu(CrashRun *run, int d)
{
    if (run->qemu[d] <= 0)
        return;
    kill(run->qemu[d], SIGKILL);
    waitpid(run->qemu[d], NULL, 0);
    run->qemu[d] = 0;
}


static void
crashRunStop(CrashRun *run)
{
    guint d;

    for (d = 0; d < CRASH_DOMAINS; d++) {
        crashKillQemu(run, d);
        g_clear_pointer(&run->xml[d], g_free);
        g_clear_pointer(&run->addrs[d], g_ptr_array_unref);
    }
    g_clear_pointer(&run->host, hdHostUnref);
    g_clear_pointer(&run->sim, hdSimHostStop);
    mgrtestRemoveTree(run->state_dir);
    g_clear_pointer(&run->state_dir, g_free);
    g_clear_pointer(&run->original, g_hash_table_unref);
}


/* Run mgr-tool with @env ("NAME=VALUE" or NULL); returns the wait status,
 * its output in *out. */
static int
crashTool(CrashRun *run, const char *env, char **out, GPtrArray *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_auto(GStrv) envp = g_get_environ();
    g_autoptr(GError) error = NULL;
    int status = 0;
    guint i;

    g_ptr_array_add(argv, (char *)g_getenv("HD_MGR_TOOL"));
    g_ptr_array_add(argv, (char *)hdSimHostRoot(run->sim));
    g_ptr_array_add(argv, run->state_dir);
    for (i = 0; i < args->len; i++)
        g_ptr_array_add(argv, g_ptr_array_index(args, i));
    g_ptr_array_add(argv, NULL);

    envp = g_environ_unsetenv(envp, "HD_CRASH_AT");
    envp = g_environ_unsetenv(envp, "HD_CRASH_TRACE");
    if (env) {
        g_auto(GStrv) kv = g_strsplit(env, "=", 2);

        envp = g_environ_setenv(envp, kv[0], kv[1], TRUE);
    }
    if (!g_spawn_sync(NULL, (char **)argv->pdata, envp, G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                      NULL, out, NULL, &status, &error))
        g_error("cannot run mgr-tool: %s", error->message);
    return status;
}


static void
crashStartQemu(CrashRun *run, int d)
{
    g_autoptr(GPtrArray) nodes = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    guint i;

    for (i = 0; i < run->addrs[d]->len; i++) {
        hdPCIAddress addr = mgrtestAddr(g_ptr_array_index(run->addrs[d], i));
        unsigned int group = 0;

        g_assert_true(hdPCIDeviceGetIOMMUGroup(run->host, &addr, &group, NULL));
        if (g_hash_table_add(seen, GUINT_TO_POINTER(group)))
            g_ptr_array_add(nodes, hdIOMMUGroupDevPath(run->host, group));
    }
    run->qemu[d] = stressStartQemu(nodes);
    g_assert_cmpint(run->qemu[d], >, 0);
}


/* After a QEMU died, the kernel releases its groups in the background:
 * wait for it, so that every run of a scenario sees the same host. */
static void
crashWaitReleased(CrashRun *run, int d)
{
    guint i;

    for (i = 0; i < run->addrs[d]->len; i++) {
        hdPCIAddress addr = mgrtestAddr(g_ptr_array_index(run->addrs[d], i));
        unsigned int group = 0;

        g_assert_true(hdPCIDeviceGetIOMMUGroup(run->host, &addr, &group, NULL));
        g_assert_true(hdSimHostWaitGroupFree(run->sim, group, 30000));
    }
}


/* Run one step; FALSE when the tool was killed (at a crash point). */
static gboolean
crashStep(CrashRun *run, const CrashStep *step, const char *env)
{
    int d = crashDomainIndex(step->domain);
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *out = NULL;
    int status;
    guint i;

    if (g_str_equal(step->verb, "qemu")) {
        crashStartQemu(run, d);
        return TRUE;
    }
    if (g_str_equal(step->verb, "crash")) {
        crashKillQemu(run, d);
        crashWaitReleased(run, d);
        return TRUE;
    }
    if (g_str_equal(step->verb, "fault")) {
        g_autoptr(GError) error = NULL;
        g_autofree char *cmd = g_strdup_printf("fault %s %s",
                                               (char *)g_ptr_array_index(run->addrs[d],
                                                                         run->addrs[d]->len - 1),
                                               step->arg);

        g_assert_true(hdSimHostCtl(run->sim, cmd, &error));
        return TRUE;
    }
    g_ptr_array_add(args, g_strdup(step->verb));
    g_ptr_array_add(args, g_strdup(step->domain));
    if (g_str_equal(step->verb, "prepare")) {
        g_ptr_array_add(args, g_strdup(run->xml[d]));
        if (g_strcmp0(step->arg, "whole-group") == 0)
            g_ptr_array_add(args, g_strdup(step->arg));
    } else if (g_str_equal(step->verb, "release")) {
        for (i = 0; i < run->addrs[d]->len / 2; i++)
            g_ptr_array_add(args, g_strdup(g_ptr_array_index(run->addrs[d], i)));
    } else if (g_str_equal(step->verb, "destroy")) {
        g_ptr_array_add(args, g_strdup_printf("%d", (int)run->qemu[d]));
    }
    status = crashTool(run, env, &out, args);
    if (g_str_equal(step->verb, "destroy") && run->qemu[d] > 0) {
        /* Ended by destroy, or to be ended by the recovery: reap it once. */
        if (waitpid(run->qemu[d], NULL, WNOHANG) == run->qemu[d])
            run->qemu[d] = 0;
    }
    if (WIFSIGNALED(status)) {
        g_assert_cmpint(WTERMSIG(status), ==, SIGKILL);
        return FALSE;
    }
    if (!WIFEXITED(status) ||
        WEXITSTATUS(status) != (g_strcmp0(step->arg, "fails") == 0 ? 1 : 0))
        g_error("%s: step %s %s %s ended with status %d:\n%s", run->scenario->name,
                step->verb, step->domain, step->arg ? step->arg : "", status, out);
    return TRUE;
}


/* After a restart: what mgr-tool reports must be consistent with the host. */
static void
crashAssertConsistent(CrashRun *run, const char *where, const char *out,
                      const CrashStep *crashed)
{
    g_autoptr(GHashTable) now = mgrtestDriverMap(run->sim);
    g_autoptr(GHashTable) tracked = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                          g_free);
    g_autoptr(GHashTable) group_domain = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                               g_free);
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    GHashTableIter iter;
    gpointer addr;
    gpointer driver;
    guint i;

    for (i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit(lines[i], " ", 4);
        const char *other;

        if (g_strv_length(f) != 4)
            continue;
        /* ADDRESS STATE DOMAIN GROUP */
        g_hash_table_insert(tracked, g_strdup(f[0]), g_strdup(f[2]));
        if (g_str_equal(f[1], "active")) {
            if (g_strcmp0(g_hash_table_lookup(now, f[0]), "vfio-pci") != 0)
                g_error("%s: after restart %s is active in %s but on '%s'", where, f[0], f[2],
                        (char *)g_hash_table_lookup(now, f[0]));
            other = g_hash_table_lookup(group_domain, f[3]);
            if (other && !g_str_equal(other, f[2]))
                g_error("%s: after restart group %s is split between %s and %s", where, f[3],
                        other, f[2]);
            g_hash_table_insert(group_domain, g_strdup(f[3]), g_strdup(f[2]));
        }
    }
    g_hash_table_iter_init(&iter, run->original);
    while (g_hash_table_iter_next(&iter, &addr, &driver)) {
        if (!g_hash_table_contains(tracked, addr) &&
            g_strcmp0(g_hash_table_lookup(now, addr), driver) != 0)
            g_error("%s: after restart %s is untracked but on '%s' instead of '%s'", where,
                    (char *)addr, (char *)g_hash_table_lookup(now, addr), (char *)driver);
    }
    /* A prepare is one transaction: after a crash, all of it or nothing. */
    if (g_str_equal(crashed->verb, "prepare")) {
        GPtrArray *asked = run->addrs[crashDomainIndex(crashed->domain)];
        guint in = 0;

        for (i = 0; i < asked->len; i++)
            in += g_strcmp0(g_hash_table_lookup(tracked, g_ptr_array_index(asked, i)),
                            crashed->domain) == 0;
        if (in != 0 && in != asked->len)
            g_error("%s: after restart %u of the %u devices of the interrupted prepare are "
                    "in %s", where, in, asked->len, crashed->domain);
    }
    g_assert_cmpuint(hdSimHostViolations(run->sim), ==, 0);
}


/* The end of every domain's life after the restart. */
static void
crashRecover(CrashRun *run, const char *where, const CrashStep *crashed)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    g_autoptr(GHashTable) now = NULL;
    g_autofree char *out = NULL;
    GHashTableIter iter;
    gpointer addr;
    gpointer driver;
    int status;
    guint d;

    g_ptr_array_add(args, "reconcile");
    status = crashTool(run, NULL, &out, args);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    crashAssertConsistent(run, where, out, crashed);

    for (d = 0; d < CRASH_DOMAINS; d++) {
        g_autofree char *name = g_strdup_printf("vm%u", d + 1);

        crashKillQemu(run, d);
        if (run->addrs[d])
            crashWaitReleased(run, d);
        g_ptr_array_set_size(args, 0);
        g_ptr_array_add(args, "release-domain");
        g_ptr_array_add(args, name);
        g_clear_pointer(&out, g_free);
        status = crashTool(run, NULL, &out, args);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* Groups whose QEMU was still alive at the last release go now. */
    g_ptr_array_set_size(args, 0);
    g_ptr_array_add(args, "give-back");
    g_clear_pointer(&out, g_free);
    status = crashTool(run, NULL, &out, args);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!g_str_has_prefix(out, "given back: ") || strchr(out, '\n') != out + strlen(out) - 1)
        g_error("%s: still tracked after recovery:\n%s", where, out);

    now = mgrtestDriverMap(run->sim);
    g_hash_table_iter_init(&iter, run->original);
    while (g_hash_table_iter_next(&iter, &addr, &driver)) {
        if (g_strcmp0(g_hash_table_lookup(now, addr), driver) != 0)
            g_error("%s: %s ended on '%s' instead of '%s'", where, (char *)addr,
                    (char *)g_hash_table_lookup(now, addr), (char *)driver);
    }
    g_assert_cmpuint(hdSimHostViolations(run->sim), ==, 0);
}


/* The crash points each step passes, as "NAME:HIT". */
static GPtrArray *
crashEnumerate(const CrashScenario *scenario)
{
    CrashRun run = { 0 };
    GPtrArray *per_step = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
    guint i;

    crashRunStart(&run, scenario);
    for (i = 0; scenario->steps[i].verb; i++) {
        g_autofree char *trace = g_strdup_printf("%s/trace-%u", run.state_dir, i);
        g_autofree char *env = g_strdup_printf("HD_CRASH_TRACE=%s", trace);
        g_autofree char *data = NULL;

        g_assert_true(crashStep(&run, &scenario->steps[i], env));
        if (!g_file_get_contents(trace, &data, NULL, NULL))
            data = g_strdup("");
        g_ptr_array_add(per_step, *g_strstrip(data) ? g_strsplit(data, "\n", -1) :
                        g_new0(char *, 1));
        g_printerr("crash-all: %s: step %u (%s %s): %u crash points\n", scenario->name, i,
                   scenario->steps[i].verb, scenario->steps[i].domain,
                   g_strv_length(g_ptr_array_index(per_step, i)));
    }
    crashRecover(&run, "(no crash)", &scenario->steps[0]);
    crashRunStop(&run);
    return per_step;
}


static void
testScenario(gconstpointer opaque)
{
    const CrashScenario *scenario = opaque;
    g_autoptr(GPtrArray) per_step = crashEnumerate(scenario);
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    guint total = 0;
    guint i;
    guint j;

    for (i = 0; i < per_step->len; i++) {
        GStrv points = g_ptr_array_index(per_step, i);
        const CrashStep *step = &scenario->steps[i];

        for (j = 0; points[j]; j++) {
            CrashRun run = { 0 };
            g_autofree char *env = g_strdup_printf("HD_CRASH_AT=%s", points[j]);
            g_autofree char *where = g_strdup_printf("%s: step %u (%s %s), crash at %s",
                                                     scenario->name, i, step->verb,
                                                     step->domain, points[j]);
            guint k;

            crashRunStart(&run, scenario);
            for (k = 0; k < i; k++)
                g_assert_true(crashStep(&run, &scenario->steps[k], NULL));
            if (crashStep(&run, step, env))
                g_error("%s: the step did not reach its crash point", where);
            crashRecover(&run, where, step);
            crashRunStop(&run);
            total++;
            *strrchr(points[j], ':') = '\0';
            g_hash_table_add(names, points[j]);
        }
    }
    g_test_message("%s: %u crash points (%u distinct) killed, restarted, recovered: "
                   "0 devices lost, 0 violations", scenario->name, total,
                   g_hash_table_size(names));
    g_printerr("crash-all: %s: %u crash points (%u distinct): 0 devices lost\n",
               scenario->name, total, g_hash_table_size(names));
    g_assert_cmpuint(total, >=, 10);
}


int
main(int argc, char **argv)
{
    const char *skip = hdTestSetup(&argc, &argv);
    guint i;

    HD_TEST_REQUIRE_SIMHOST(skip);
    if (!g_getenv("HD_MGR_TOOL")) {
        g_printerr("SKIP: HD_MGR_TOOL is not set\n");
        return HD_TEST_SKIP_EXIT;
    }
    for (i = 0; i < G_N_ELEMENTS(scenarios); i++) {
        g_autofree char *path = g_strdup_printf("/crash-all/%s", scenarios[i].name);

        g_test_add_data_func(path, &scenarios[i], testScenario);
    }
    return g_test_run();
}
