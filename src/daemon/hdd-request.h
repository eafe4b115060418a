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

/* Arrays and objects nest at most this deep in a request (the request
 * object itself is level 1); checked before any parser sees it. */
#define HDD_MAX_REQUEST_DEPTH 32

typedef struct {
    JsonNode *root;         /* the parsed document (owns the rest) */
    const char *command;    /* "execute" */
    JsonObject *arguments;  /* "arguments", NULL if absent */
    JsonNode *id;           /* "id", NULL if absent; also set on failure when known */
    /* On failure, the protocol's error class for the reply:
     * "GenericError" (malformed), "InvalidArgument" (a bad string) or
     * "LimitExceeded" (nested too deep). */
    const char *error_class;
} hddRequest;

void hddRequestClear(hddRequest *req);

/* {"execute": STR, "arguments"?: OBJ, "id"?: ANY} in valid UTF-8, and
 * nothing else, nested at most HDD_MAX_REQUEST_DEPTH deep, whose strings
 * (member names too) are valid UTF-8 without NUL or other control
 * characters, but for tabs and line breaks in a document argument
 * ("xml").  On failure @error says why, req->error_class is set, and
 * req->id is the request's id when it could be read, for the error reply. */
gboolean hddRequestParse(const char *line, gsize len, hddRequest *req, GError **error);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(hddRequest, hddRequestClear)
