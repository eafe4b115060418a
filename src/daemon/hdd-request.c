/*
 * hdd-request.c: one request of hostdevd's protocol, checked
 *
 * Three passes, cheapest first:
 *  1. the bytes: valid UTF-8, nesting depth (json-glib's parser recurses
 *     once per level: an array nested 100,000 deep overflows the stack), no
 *     \u0000 in a string (json-glib would cut the string there, so that
 *     "0000:11:00.0\u0000junk" would name 0000:11:00.0), no half of a
 *     UTF-16 surrogate pair (json-glib makes invalid UTF-8 of it);
 *  2. json-glib's parser;
 *  3. the document: its members, and every string it carries (member
 *     names too) is text: valid UTF-8 (a lone \ud800 escape is not) without
 *     control characters, which could move a terminal's cursor or rewrite
 *     what it shows, and have no business in a name, path or address.
 *     Documents (the "xml" argument) keep their tabs and line breaks.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "hdinternal.h"
#include "hdd-request.h"

/* Arguments whose value is a document: tabs and line breaks allowed. */
static const char *const hddDocumentArgs[] = { "xml", NULL };


void
hddRequestClear(hddRequest *req)
{
    g_clear_pointer(&req->root, json_node_unref);
    req->command = NULL;
    req->arguments = NULL;
    req->id = NULL;
    req->error_class = NULL;
}


static gboolean
hddRequestFail(hddRequest *req, const char *klass)
{
    /* Refused: only the id may stay, for the error reply. */
    req->command = NULL;
    req->arguments = NULL;
    req->error_class = klass;
    return FALSE;
}


/* The UTF-16 unit of the \uXXXX escape at @p (6 bytes), or -1. */
static gint
hddRequestEscapeUnit(const char *p, gsize left)
{
    gint unit = 0;
    gsize i;

    if (left < 6 || p[0] != '\\' || p[1] != 'u')
        return -1;
    for (i = 2; i < 6; i++) {
        if (!g_ascii_isxdigit(p[i]))
            return -1;
        unit = unit * 16 + g_ascii_xdigit_value(p[i]);
    }
    return unit;
}


/* In a string at @i: a \uXXXX escape json-glib would turn into something
 * that is not text: NUL (it cuts the string there), or half of a UTF-16
 * surrogate pair (invalid UTF-8).  Returns the bytes to skip, 0 if there
 * is no such escape here. */
static gsize
hddRequestCheckEscape(const char *line, gsize len, gsize i, hddRequest *req, GError **error)
{
    gint unit = hddRequestEscapeUnit(line + i, len - i);
    gint low;

    if (unit < 0)
        return 2;
    if (unit == 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("a string of the request has a NUL character (\\u0000) at byte "
                     "%1$" G_GSIZE_FORMAT ": strings may not contain NUL"), i);
        return 0;
    }
    if (unit >= 0xdc00 && unit <= 0xdfff)
        goto lone;
    if (unit < 0xd800 || unit > 0xdbff)
        return 6;
    low = hddRequestEscapeUnit(line + i + 6, len - i - 6);
    if (low >= 0xdc00 && low <= 0xdfff)
        return 12;

 lone:
    hdErrorSet(error, HD_ERROR_INVALID_ARG,
               _("a string of the request has a lone UTF-16 surrogate (\\u%1$04x) at byte "
                 "%2$" G_GSIZE_FORMAT ": strings must be valid Unicode"), (unsigned int)unit, i);
    return 0;
}


/* Pass 1: one scan of the bytes. */
static gboolean
hddRequestScan(const char *line, gsize len, hddRequest *req, GError **error)
{
    gboolean in_string = FALSE;
    guint depth = 0;
    gsize i = 0;

    while (i < len) {
        char c = line[i];

        if (in_string) {
            if (c == '\\') {
                gsize skip = hddRequestCheckEscape(line, len, i, req, error);

                if (skip == 0)
                    return hddRequestFail(req, "InvalidArgument");
                i += skip;
                continue;
            }
            if (c == '"')
                in_string = FALSE;
        } else if (c == '"') {
            in_string = TRUE;
        } else if (c == '[' || c == '{') {
            if (++depth > HDD_MAX_REQUEST_DEPTH) {
                hdErrorSet(error, HD_ERROR_INVALID_ARG,
                           _("the request nests arrays and objects deeper than %1$u levels"),
                           (unsigned int)HDD_MAX_REQUEST_DEPTH);
                return hddRequestFail(req, "LimitExceeded");
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
        i++;
    }
    return TRUE;
}


static gboolean
hddRequestCheckText(const char *s, const char *where, gboolean document, hddRequest *req,
                    GError **error)
{
    gunichar bad;

    if (hdStringIsText(s, -1, document, &bad))
        return TRUE;
    if (bad == (gunichar)-1)
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("%1$s is not valid UTF-8"), where);
    else
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("%1$s contains the control character U+%2$04X: strings may not contain "
                     "control characters"), where, (unsigned int)bad);
    return hddRequestFail(req, "InvalidArgument");
}


/* Pass 3: every string in @node (at @path, for messages) is text. */
static gboolean
hddRequestCheckStrings(JsonNode *node, const char *path, gboolean document, hddRequest *req,
                       GError **error)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *obj = json_node_get_object(node);
        g_autoptr(GList) members = json_object_get_members(obj);
        GList *l;

        for (l = members; l; l = l->next) {
            g_autofree char *where = g_strdup_printf(_("a member name in '%1$s'"), path);
            g_autofree char *child = NULL;

            if (!hddRequestCheckText(l->data, where, FALSE, req, error))
                return FALSE;
            child = g_strdup_printf("%s.%s", path, (const char *)l->data);
            if (!hddRequestCheckStrings(json_object_get_member(obj, l->data), child,
                                        FALSE, req, error))
                return FALSE;
        }
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);
        guint i;

        for (i = 0; i < json_array_get_length(arr); i++) {
            g_autofree char *child = g_strdup_printf("%s[%u]", path, i);

            if (!hddRequestCheckStrings(json_array_get_element(arr, i), child, FALSE, req,
                                        error))
                return FALSE;
        }
    } else if (JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING) {
        g_autofree char *where = g_strdup_printf("'%s'", path);

        return hddRequestCheckText(json_node_get_string(node), where, document, req, error);
    }
    return TRUE;
}


static gboolean
hddRequestCheckArguments(hddRequest *req, GError **error)
{
    g_autoptr(GList) members = json_object_get_members(req->arguments);
    GList *l;

    for (l = members; l; l = l->next) {
        const char *name = l->data;
        g_autofree char *path = NULL;

        if (!hddRequestCheckText(name, _("an argument name"), FALSE, req, error))
            return FALSE;
        path = g_strdup_printf("arguments.%s", name);
        if (!hddRequestCheckStrings(json_object_get_member(req->arguments, name), path,
                                    g_strv_contains(hddDocumentArgs, name), req, error))
            return FALSE;
    }
    return TRUE;
}


gboolean
hddRequestParse(const char *line, gsize len, hddRequest *req, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GList) members = NULL;
    JsonObject *obj;
    GList *l;

    memset(req, 0, sizeof(*req));
    if (len > G_MAXSSIZE || !g_utf8_validate(line, (gssize)len, NULL)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s", _("the request is not valid UTF-8"));
        return hddRequestFail(req, "GenericError");
    }
    if (!hddRequestScan(line, len, req, error))
        return FALSE;
    if (!json_parser_load_from_data(parser, line, (gssize)len, NULL) ||
        !json_parser_get_root(parser) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s", _("the request is not a JSON object"));
        return hddRequestFail(req, "GenericError");
    }
    req->root = json_node_copy(json_parser_get_root(parser));
    obj = json_node_get_object(req->root);
    /* An id that is not text is not sent back. */
    if (json_object_has_member(obj, "id") &&
        !hddRequestCheckStrings(json_object_get_member(obj, "id"), "id", FALSE, req, error))
        return FALSE;
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
            /* Escaped: the name was not checked as text. */
            g_autofree char *escaped = g_strescape(name, NULL);

            hdErrorSet(error, HD_ERROR_INVALID_ARG,
                       _("unexpected member '%1$s' in the request"), escaped);
            return hddRequestFail(req, "GenericError");
        }
    }
    if (!req->command) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s", _("the request has no 'execute' string"));
        return hddRequestFail(req, "GenericError");
    }
    if (!hddRequestCheckText(req->command, "'execute'", FALSE, req, error) ||
        (req->arguments && !hddRequestCheckArguments(req, error)))
        return FALSE;
    return TRUE;
}
