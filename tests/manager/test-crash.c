/*
 * test-crash.c: SIGKILL at every crash point of a prepare and a give-back
 *
 * The scenario (prepare a domain with a whole GPU group, a 4-function card
 * and a bridged NIC pair; then release the domain) first runs once with
 * HD_CRASH_TRACE to enumerate the crash points it passes.  Then, for each
 * point, on a fresh simulated host: run the scenario with HD_CRASH_AT at
 * that point, check the process died there, restart (reconcile), release
 * whatever the domain still has, and check every device is on its original
 * driver, nothing is tracked and no viability violation happened.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "mgrtest.h"

typedef struct {
    hdSimHost *sim;
    char *state_dir;
    char *xml;
    GHashTable *original;   /* address -> driver */
} CrashRun;


static char *
crashWriteDomain(hdSimHost *sim, const char *dir)
{
    g_autoptr(GPtrArray) gpus = mgrtestDevicesOn(sim, "nvidia");
    g_autoptr(GPtrArray) card = mgrtestDevicesOn(sim, "igb");
    g_autoptr(GPtrArray) nics = mgrtestDevicesOn(sim, "e1000");
    g_autoptr(GString) xml = g_string_new("<domain><name>vm1</name><devices>\n");
    g_autofree char *path = g_build_filename(dir, "domain.xml", NULL);
    GPtrArray *lists[] = { gpus, card, nics };
    guint i;
    guint j;

    /* Only the GPU of its group: the audio sibling follows (whole group). */
    g_ptr_array_set_size(gpus, 1);
    for (i = 0; i < G_N_ELEMENTS(lists); i++) {
        for (j = 0; j < lists[i]->len; j++) {
            hdPCIAddress a = mgrtestAddr(g_ptr_array_index(lists[i], j));

            g_string_append_printf(xml,
                                   "<hostdev mode='subsystem' type='pci' managed='yes'>"
                                   "<source><address domain='0x%04x' bus='0x%02x' "
                                   "slot='0x%02x' function='0x%x'/></source></hostdev>\n",
                                   a.domain, a.bus, a.slot, a.function);
        }
    }
    g_string_append(xml, "</devices></domain>\n");
    g_assert_true(g_file_set_contents(path, xml->str, -1, NULL));
    return g_steal_pointer(&path);
}


static void
crashRunStart(CrashRun *run)
{
    g_autoptr(GError) error = NULL;

    run->sim = hdSimHostStart("small", NULL, &error);
    g_assert_no_error(error);
    run->state_dir = g_dir_make_tmp("hdcrash-XXXXXX", &error);
    g_assert_no_error(error);
    run->xml = crashWriteDomain(run->sim, run->state_dir);
    run->original = mgrtestDriverMap(run->sim);
}


static void
crashRunStop(CrashRun *run)
{
    g_clear_pointer(&run->sim, hdSimHostStop);
    mgrtestRemoveTree(run->state_dir);
    g_clear_pointer(&run->state_dir, g_free);
    g_clear_pointer(&run->xml, g_free);
    g_clear_pointer(&run->original, g_hash_table_unref);
}


/* Run mgr-tool with one more environment variable (or none); returns the
 * wait status, and its output in *out. */
static int
crashTool(CrashRun *run, const char *env, char **out, const char *verb, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_auto(GStrv) envp = g_get_environ();
    g_autoptr(GError) error = NULL;
    int status = 0;
    const char *arg;
    va_list ap;

    g_ptr_array_add(argv, (char *)g_getenv("HD_MGR_TOOL"));
    g_ptr_array_add(argv, (char *)hdSimHostRoot(run->sim));
    g_ptr_array_add(argv, run->state_dir);
    g_ptr_array_add(argv, (char *)verb);
    va_start(ap, verb);
    while ((arg = va_arg(ap, const char *)))
        g_ptr_array_add(argv, (char *)arg);
    va_end(ap);
    g_ptr_array_add(argv, NULL);

    envp = g_environ_unsetenv(envp, "HD_CRASH_AT");
    envp = g_environ_unsetenv(envp, "HD_CRASH_TRACE");
    if (env) {
        g_auto(GStrv) kv = g_strsplit(env, "=", 2);
        envp = g_environ_setenv(envp, kv[0], kv[1], TRUE);
    }
    if (!g_spawn_sync(NULL, (char **)argv->pdata, envp, G_SPAWN_DEFAULT, NULL, NULL, out,
                      NULL, &status, &error))
        g_error("cannot run mgr-tool: %s", error->message);
    return status;
}


/* Steps of the scenario; returns FALSE when the tool was killed. */
static gboolean
crashScenario(CrashRun *run, const char *env)
{
    int status;
    g_autofree char *out1 = NULL;
    g_autofree char *out2 = NULL;

    status = crashTool(run, env, &out1, "prepare", "vm1", run->xml, "whole-group", NULL);
    if (WIFSIGNALED(status)) {
        g_assert_cmpint(WTERMSIG(status), ==, SIGKILL);
        return FALSE;
    }
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    status = crashTool(run, env, &out2, "release-domain", "vm1", NULL);
    if (WIFSIGNALED(status)) {
        g_assert_cmpint(WTERMSIG(status), ==, SIGKILL);
        return FALSE;
    }
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return TRUE;
}


static void
crashAssertHome(CrashRun *run, const char *point)
{
    g_autoptr(GHashTable) now = mgrtestDriverMap(run->sim);
    GHashTableIter iter;
    gpointer addr;
    gpointer driver;

    g_hash_table_iter_init(&iter, run->original);
    while (g_hash_table_iter_next(&iter, &addr, &driver)) {
        const char *current = g_hash_table_lookup(now, addr);

        if (g_strcmp0(current, driver) != 0)
            g_error("crash at %s: %s ended on '%s' instead of '%s'", point, (char *)addr,
                    current, (char *)driver);
    }
    g_assert_cmpuint(hdSimHostViolations(run->sim), ==, 0);
}


static GStrv
crashEnumeratePoints(void)
{
    CrashRun run = { 0 };
    g_autofree char *trace = NULL;
    g_autofree char *env = NULL;
    g_autofree char *data = NULL;

    crashRunStart(&run);
    trace = g_build_filename(run.state_dir, "trace", NULL);
    env = g_strdup_printf("HD_CRASH_TRACE=%s", trace);
    g_assert_true(crashScenario(&run, env));
    crashAssertHome(&run, "(none)");
    g_assert_true(g_file_get_contents(trace, &data, NULL, NULL));
    crashRunStop(&run);
    return g_strsplit(g_strstrip(data), "\n", -1);
}


static void
testEveryCrashPoint(void)
{
    g_auto(GStrv) points = crashEnumeratePoints();
    guint prepare = 0;
    guint giveback = 0;
    guint i;

    for (i = 0; points[i]; i++) {
        CrashRun run = { 0 };
        g_autofree char *env = g_strdup_printf("HD_CRASH_AT=%s", points[i]);
        g_autofree char *out = NULL;
        int status;

        prepare += g_str_has_prefix(points[i], "prepare-");
        giveback += g_str_has_prefix(points[i], "give-back-") ||
            g_str_has_prefix(points[i], "return-");
        crashRunStart(&run);
        if (crashScenario(&run, env))
            g_error("the scenario did not reach crash point %s", points[i]);

        /* Restart: reconcile, then finish the domain's life. */
        status = crashTool(&run, NULL, &out, "reconcile", NULL);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        g_clear_pointer(&out, g_free);
        status = crashTool(&run, NULL, &out, "release-domain", "vm1", NULL);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (*out)
            g_error("crash at %s: still tracked after recovery:\n%s", points[i], out);
        crashAssertHome(&run, points[i]);
        crashRunStop(&run);
    }
    g_test_message("%u crash points (%u in prepare, %u in give-back): 0 devices lost",
                   i, prepare, giveback);
    g_assert_cmpuint(prepare, >=, 3);
    g_assert_cmpuint(giveback, >=, 3);
}


int
main(int argc, char **argv)
{
    const char *skip = hdTestSetup(&argc, &argv);

    HD_TEST_REQUIRE_SIMHOST(skip);
    if (!g_getenv("HD_MGR_TOOL")) {
        g_printerr("SKIP: HD_MGR_TOOL is not set\n");
        return HD_TEST_SKIP_EXIT;
    }
    g_test_add_func("/crash/every-point", testEveryCrashPoint);
    return g_test_run();
}
