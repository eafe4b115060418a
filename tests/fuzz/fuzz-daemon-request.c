/*
 * fuzz-daemon-request.c: hostdevd's request check (hddRequestParse)
 *
 * Every line a client sends goes through it first.  Whatever it accepts has
 * a command string and, if any, object arguments, nests at most
 * HDD_MAX_REQUEST_DEPTH deep, and every string in it is text (no control
 * character but the layout of a document argument); whatever it refuses
 * says why, with an error class, in a message the client gets back.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "fuzz.h"
#include "hdinternal.h"
#include "hdd-request.h"


/* Every string under @node is text; @node nests at most @depth_left. */
static void
checkAccepted(JsonNode *node, guint depth_left, gboolean document)
{
    gunichar bad;

    if (JSON_NODE_HOLDS_OBJECT(node) || JSON_NODE_HOLDS_ARRAY(node)) {
        g_autoptr(GList) members = NULL;
        GList *l;
        guint i;

        if (depth_left == 0)
            g_error("an accepted request nests deeper than %u", HDD_MAX_REQUEST_DEPTH);
        if (JSON_NODE_HOLDS_ARRAY(node)) {
            JsonArray *arr = json_node_get_array(node);

            for (i = 0; i < json_array_get_length(arr); i++)
                checkAccepted(json_array_get_element(arr, i), depth_left - 1, FALSE);
            return;
        }
        members = json_object_get_members(json_node_get_object(node));
        for (l = members; l; l = l->next) {
            if (!hdStringIsText(l->data, -1, FALSE, &bad))
                g_error("an accepted request has a member name that is not text");
            checkAccepted(json_object_get_member(json_node_get_object(node), l->data),
                          depth_left - 1, FALSE);
        }
    } else if (JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING) {
        if (!hdStringIsText(json_node_get_string(node), -1, document, &bad))
            g_error("an accepted request has a string that is not text");
    }
}


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
    gunichar bad;

    if (!hddRequestParse((const char *)data, size, &req, &error)) {
        if (!error || !error->message || !*error->message)
            g_error("a request was refused without a message");
        if (req.command)
            g_error("a refused request still has a command");
        if (g_strcmp0(req.error_class, "GenericError") != 0 &&
            g_strcmp0(req.error_class, "InvalidArgument") != 0 &&
            g_strcmp0(req.error_class, "LimitExceeded") != 0)
            g_error("a refused request has no error class");
        return 0;
    }
    if (error)
        g_error("an accepted request set an error");
    if (!req.command || !req.root || !JSON_NODE_HOLDS_OBJECT(req.root))
        g_error("an accepted request has no command");
    if (req.arguments && req.arguments != json_object_get_object_member(
            json_node_get_object(req.root), "arguments"))
        g_error("the arguments are not the request's");
    if (req.error_class)
        g_error("an accepted request has an error class");
    if (req.id)
        checkAccepted(req.id, HDD_MAX_REQUEST_DEPTH - 1, FALSE);
    if (req.arguments) {
        g_autoptr(GList) names = json_object_get_members(req.arguments);
        GList *l;

        /* The document argument keeps its layout. */
        for (l = names; l; l = l->next) {
            if (!hdStringIsText(l->data, -1, FALSE, &bad))
                g_error("an accepted request has an argument name that is not text");
            checkAccepted(json_object_get_member(req.arguments, l->data),
                          HDD_MAX_REQUEST_DEPTH - 2, strcmp(l->data, "xml") == 0);
        }
    }
    if (!hdStringIsText(req.command, -1, FALSE, &bad))
        g_error("an accepted request has a command that is not text");
    return 0;
}
