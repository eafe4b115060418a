/*
 * hdd-request.h: one request of hostdevd's protocol, checked
 *
 * Kept apart from the server so that the fuzzers reach exactly the code the
 * daemon runs on every line a client sends.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

typedef struct {
    JsonNode *root;         /* the parsed document (owns the rest) */
    const char *command;    /* "execute" */
    JsonObject *arguments;  /* "arguments", NULL if absent */
    JsonNode *id;           /* "id", NULL if absent; also set on failure when known */
} hddRequest;

void hddRequestClear(hddRequest *req);

/* {"execute": STR, "arguments"?: OBJ, "id"?: ANY} in valid UTF-8, and
 * nothing else.  On failure @error says why and req->id is the request's
 * id when it could be read, for the error reply. */
gboolean hddRequestParse(const char *line, gsize len, hddRequest *req, GError **error);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(hddRequest, hddRequestClear)
