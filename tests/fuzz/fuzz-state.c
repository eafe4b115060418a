/*
 * fuzz-state.c: the manager's state file (hdStateParse)
 *
 * The state file is read back after a crash, possibly written by another
 * version or damaged: the loader must refuse what it cannot read, never
 * misread it.  What it accepts must format (hdStateFormat) to a document
 * that parses to the same records: the next write must not lose a device.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "fuzz.h"
#include "hdstate.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzzQuietLogs();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) records = hdStateParse((const char *)data, size, &error);
    g_autoptr(GPtrArray) again = NULL;
    g_autofree char *first = NULL;
    g_autofree char *second = NULL;

    if (!records) {
        if (!error || !error->message || !*error->message)
            g_error("the state loader failed without a message");
        return 0;
    }
    first = hdStateFormat(records);
    if (!(again = hdStateParse(first, strlen(first), &error)))
        g_error("the state loader refuses what it wrote: %s\n%s", error->message, first);
    second = hdStateFormat(again);
    if (g_strcmp0(first, second) != 0)
        g_error("the state does not survive a write and a read:\n%s\n---\n%s", first, second);
    return 0;
}
