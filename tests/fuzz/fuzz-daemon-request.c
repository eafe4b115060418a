/*
 * fuzz-daemon-request.c: hostdevd's request check (hddRequestParse)
 *
 * Every line a client sends goes through it first.  Whatever it accepts has
 * a command string and, if any, object arguments; whatever it refuses says
 * why, in a message the client gets back.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"
#include "hdd-request.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzzQuietLogs();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_auto(hddRequest) req = { 0 };
    g_autoptr(GError) error = NULL;

    if (!hddRequestParse((const char *)data, size, &req, &error)) {
        if (!error || !error->message || !*error->message)
            g_error("a request was refused without a message");
        if (req.command)
            g_error("a refused request still has a command");
        return 0;
    }
    if (error)
        g_error("an accepted request set an error");
    if (!req.command || !req.root || !JSON_NODE_HOLDS_OBJECT(req.root))
        g_error("an accepted request has no command");
    if (req.arguments && req.arguments != json_object_get_object_member(
            json_node_get_object(req.root), "arguments"))
        g_error("the arguments are not the request's");
    return 0;
}
