/*
 * mgrtest.c: helpers shared by the manager tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>

#include "mgrtest.h"


static int
mgrtestCompareStrings(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}


static JsonArray *
mgrtestStateDevices(JsonNode *state)
{
    return json_object_get_array_member(json_node_get_object(state), "devices");
}


GPtrArray *
mgrtestDevicesOn(hdSimHost *sim, const char *driver)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = hdSimHostState(sim, &error);
    GPtrArray *found = g_ptr_array_new_with_free_func(g_free);
    JsonArray *devices;
    guint i;

    g_assert_no_error(error);
    devices = mgrtestStateDevices(state);
    for (i = 0; i < json_array_get_length(devices); i++) {
        JsonObject *dev = json_array_get_object_element(devices, i);

        if (g_strcmp0(json_object_get_string_member_with_default(dev, "driver", NULL),
                      driver) == 0)
            g_ptr_array_add(found, g_strdup(json_object_get_string_member(dev, "address")));
    }
    g_ptr_array_sort(found, mgrtestCompareStrings);
    return found;
}


GHashTable *
mgrtestDriverMap(hdSimHost *sim)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = hdSimHostState(sim, &error);
    GHashTable *map = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    JsonArray *devices;
    guint i;

    g_assert_no_error(error);
    devices = mgrtestStateDevices(state);
    for (i = 0; i < json_array_get_length(devices); i++) {
        JsonObject *dev = json_array_get_object_element(devices, i);
        const char *driver = json_object_get_string_member_with_default(dev, "driver", NULL);

        g_hash_table_insert(map, g_strdup(json_object_get_string_member(dev, "address")),
                            g_strdup(driver ? driver : ""));
    }
    return map;
}


hdPCIAddress
mgrtestAddr(const char *str)
{
    hdPCIAddress addr;
    g_autoptr(GError) error = NULL;

    if (!hdPCIAddressParse(str, &addr, &error))
        g_error("%s", error->message);
    return addr;
}


void
mgrtestAssertDriver(hdSimHost *sim, const char *addr, const char *expected)
{
    g_autofree char *driver = hdSimHostDriverOf(sim, addr);

    if (g_strcmp0(driver, expected) != 0)
        g_error("%s is on driver '%s', expected '%s'", addr, driver ? driver : "none",
                expected ? expected : "none");
}


/* The child: only async-signal-safe calls. */
static G_GNUC_NORETURN void
mgrtestQemuMain(GPtrArray *nodes, mgrtestQemuKind kind, int ready)
{
    guint i;

    if (kind == MGRTEST_QEMU_IGNORES_TERM)
        signal(SIGTERM, SIG_IGN);
    for (i = 0; i < nodes->len; i++) {
        if (open(g_ptr_array_index(nodes, i), O_RDWR) < 0)
            _exit(1);
    }
    if (write(ready, "r", 1) != 1)
        _exit(1);
    if (kind == MGRTEST_QEMU_EXITS_SLOWLY) {
        sigset_t set;
        int sig;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigprocmask(SIG_BLOCK, &set, NULL);
        sigwait(&set, &sig);
        usleep(300 * 1000);
        _exit(0);
    }
    for (;;)
        pause();
}


pid_t
mgrtestStartQemu(GPtrArray *nodes, mgrtestQemuKind kind)
{
    int ready[2];
    char byte = 0;
    pid_t pid;

    g_assert_cmpint(pipe(ready), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        close(ready[0]);
        mgrtestQemuMain(nodes, kind, ready[1]);
    }
    close(ready[1]);
    g_assert_cmpint(read(ready[0], &byte, 1), ==, 1);
    close(ready[0]);
    return pid;
}


void
mgrtestRemoveTree(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        g_unlink(path);
    }
    g_rmdir(dir);
}
