/*
 * hdcrash.c: crash points for crash-safety tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "hdinternal.h"
#include "hdcrash.h"

typedef struct {
    gboolean enabled;
    int trace_fd;
    char *crash_name;
    guint crash_hit;      /* 1-based */
    GHashTable *hits;     /* name -> count */
    GMutex lock;
} hdCrashConfig;


static hdCrashConfig *
hdCrashConfigGet(void)
{
    static hdCrashConfig *config;
    static gsize initialized;

    if (g_once_init_enter(&initialized)) {
        hdCrashConfig *c = g_new0(hdCrashConfig, 1);
        const char *trace = g_getenv("HD_CRASH_TRACE");
        const char *at = g_getenv("HD_CRASH_AT");

        c->trace_fd = -1;
        if (trace && *trace)
            c->trace_fd = open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (at && *at) {
            const char *colon = strrchr(at, ':');

            c->crash_hit = 1;
            if (colon && colon[1]) {
                c->crash_name = g_strndup(at, colon - at);
                c->crash_hit = (guint)g_ascii_strtoull(colon + 1, NULL, 10);
            } else {
                c->crash_name = g_strdup(at);
            }
        }
        c->enabled = c->trace_fd >= 0 || c->crash_name;
        c->hits = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        config = c;
        g_once_init_leave(&initialized, 1);
    }
    return config;
}


void
hdCrashPoint(const char *name)
{
    hdCrashConfig *c = hdCrashConfigGet();
    guint hit;

    if (!c->enabled)
        return;
    g_mutex_lock(&c->lock);
    hit = GPOINTER_TO_UINT(g_hash_table_lookup(c->hits, name)) + 1;
    g_hash_table_insert(c->hits, g_strdup(name), GUINT_TO_POINTER(hit));
    if (c->trace_fd >= 0) {
        g_autofree char *line = g_strdup_printf("%s:%u\n", name, hit);
        if (write(c->trace_fd, line, strlen(line)) < 0)
            g_warning("cannot write crash trace: %s", g_strerror(errno));
    }
    if (c->crash_name && strcmp(c->crash_name, name) == 0 && hit == c->crash_hit)
        kill(getpid(), SIGKILL);
    g_mutex_unlock(&c->lock);
}
