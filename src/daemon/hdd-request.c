/*
 * hdd-request.c: one request of hostdevd's protocol, checked
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "hdinternal.h"
#include "hdd-request.h"


void
hddRequestClear(hddRequest *req)
{
    g_clear_pointer(&req->root, json_node_unref);
    req->command = NULL;
    req->arguments = NULL;
    req->id = NULL;
}


gboolean
hddRequestParse(const char *line, gsize len, hddRequest *req, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GList) members = NULL;
    JsonObject *obj;
    GList *l;

    memset(req, 0, sizeof(*req));
    if (len > G_MAXSSIZE || !g_utf8_validate(line, (gssize)len, NULL) ||
        !json_parser_load_from_data(parser, line, (gssize)len, NULL) ||
        !json_parser_get_root(parser) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s", _("the request is not a JSON object"));
        return FALSE;
    }
    req->root = json_node_copy(json_parser_get_root(parser));
    obj = json_node_get_object(req->root);
    req->id = json_object_get_member(obj, "id");
    members = json_object_get_members(obj);
    for (l = members; l; l = l->next) {
        const char *name = l->data;
        JsonNode *val = json_object_get_member(obj, name);

        if (strcmp(name, "execute") == 0 && JSON_NODE_HOLDS_VALUE(val) &&
            json_node_get_value_type(val) == G_TYPE_STRING) {
            req->command = json_node_get_string(val);
        } else if (strcmp(name, "arguments") == 0 && JSON_NODE_HOLDS_OBJECT(val)) {
            req->arguments = json_node_get_object(val);
        } else if (strcmp(name, "id") != 0) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG,
                       _("unexpected member '%1$s' in the request"), name);
            /* Refused: only the id stays, for the error reply. */
            req->command = NULL;
            req->arguments = NULL;
            return FALSE;
        }
    }
    if (!req->command) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s", _("the request has no 'execute' string"));
        return FALSE;
    }
    return TRUE;
}
