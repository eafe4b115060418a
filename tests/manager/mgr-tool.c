/*
 * mgr-tool.c: drive the manager from a separate process, so that tests can
 * kill it at a crash point and start it again.
 *
 *   mgr-tool ROOT STATE_DIR prepare DOMAIN FILE.xml [whole-group]
 *   mgr-tool ROOT STATE_DIR release DOMAIN ADDR...
 *   mgr-tool ROOT STATE_DIR release-domain DOMAIN
 *   mgr-tool ROOT STATE_DIR give-back      (every pending group that is free)
 *   mgr-tool ROOT STATE_DIR destroy DOMAIN PID
 *                    (end QEMU PID, give every group back in parallel; progress
 *                     lines "given back N/M" on stderr, then a summary)
 *   mgr-tool ROOT STATE_DIR reconcile
 *
 * Prints the tracked devices after the operation, one per line:
 * "ADDRESS STATE DOMAIN GROUP"; give-back first prints "given back: N".
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "hostdev/destroy.h"
#include "hostdev/error.h"
#include "hostdev/manager.h"


static void
toolProgress(guint given_back, guint total, gpointer opaque)
{
    g_printerr("given back %u/%u\n", given_back, total);
}


static gboolean
toolDestroy(hdManager *mgr, const char *domain, const char *pid, GError **error)
{
    hdDestroyOptions opts = { .progress = toolProgress };
    g_autoptr(hdDestroyReport) report = NULL;
    guint i;

    if (!hdDestroyDomain(mgr, domain, (pid_t)g_ascii_strtoll(pid, NULL, 10), &opts, &report,
                         error))
        return FALSE;
    g_print("destroyed: %u/%u devices given back, QEMU ended in %.2f s%s, groups in %.2f s\n",
            report->given_back, report->devices, report->terminate_s,
            report->killed ? " (SIGKILL)" : "", report->give_back_s);
    for (i = 0; i < report->problems->len; i++)
        g_print("problem: %s\n", (char *)g_ptr_array_index(report->problems, i));
    return TRUE;
}


static gboolean
toolRun(hdManager *mgr, int argc, char **argv, GError **error)
{
    const char *verb = argv[3];

    if (strcmp(verb, "prepare") == 0 && argc >= 6) {
        g_autoptr(hdDomainDef) def = hdDomainDefParseFile(argv[5], error);
        unsigned int flags = 0;

        if (argc > 6 && strcmp(argv[6], "whole-group") == 0)
            flags |= HD_PREPARE_WHOLE_GROUP;
        return def && hdManagerPrepare(mgr, argv[4], def->hostdevs, flags, error);
    }
    if (strcmp(verb, "release") == 0 && argc >= 6) {
        g_autoptr(GArray) addrs = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
        int i;

        for (i = 5; i < argc; i++) {
            hdPCIAddress addr;

            if (!hdPCIAddressParse(argv[i], &addr, error))
                return FALSE;
            g_array_append_val(addrs, addr);
        }
        return hdManagerRelease(mgr, argv[4], addrs, error);
    }
    if (strcmp(verb, "release-domain") == 0 && argc == 5)
        return hdManagerReleaseDomain(mgr, argv[4], error);
    if (strcmp(verb, "give-back") == 0 && argc == 4) {
        guint count = hdManagerGiveBackPending(mgr, error);

        g_print("given back: %u\n", count);
        return !*error;
    }
    if (strcmp(verb, "destroy") == 0 && argc == 6)
        return toolDestroy(mgr, argv[4], argv[5], error);
    if (strcmp(verb, "reconcile") == 0 && argc == 4)
        return TRUE;
    hdErrorSet(error, HD_ERROR_INVALID_ARG, "usage: mgr-tool ROOT STATE_DIR VERB ARGS...");
    return FALSE;
}


int
main(int argc, char **argv)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(hdHost) host = NULL;
    g_autoptr(hdManager) mgr = NULL;
    g_autoptr(GPtrArray) tracked = NULL;
    guint i;

    if (argc < 4) {
        g_printerr("usage: mgr-tool ROOT STATE_DIR VERB ARGS...\n");
        return 2;
    }
    host = hdHostNew(argv[1]);
    if (!(mgr = hdManagerOpen(host, argv[2], &error)) || !toolRun(mgr, argc, argv, &error)) {
        g_printerr("mgr-tool: %s\n", error->message);
        return 1;
    }
    tracked = hdManagerListTracked(mgr);
    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);
        char addr[HD_PCI_ADDRESS_STRLEN];

        g_print("%s %s %s %u\n", hdPCIAddressFormat(&info->addr, addr),
                hdDeviceStateToString(info->state), info->domain ? info->domain : "-",
                info->group);
    }
    return 0;
}
