/*
 * qmptest.h: a scripted QMP server on a socketpair, for the client tests
 *
 * The server runs in a thread: it sends the greeting, then answers each
 * command line with what the test's function returns for it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

typedef struct _qmptestPeer qmptestPeer;

/* What to send for the command @name (id @id): NULL sends nothing,
 * QMPTEST_CLOSE closes the connection; anything else is written as is
 * (lines must end with '\n').  The server frees what it gets. */
typedef char *(*qmptestFunc)(qmptestPeer *peer, const char *name, const char *id,
                             JsonObject *args, gpointer opaque);

#define QMPTEST_CLOSE ((char *)-1)

#define QMPTEST_GREETING \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 1, \"major\": 9}, " \
    "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n"

/* @greeting NULL: none.  The client end is returned in *@client_fd. */
qmptestPeer *qmptestPeerStart(const char *greeting, qmptestFunc func, gpointer opaque,
                              int *client_fd);
/* Joins the thread (it ends when the client closes its end). */
void qmptestPeerStop(qmptestPeer *peer);

/* Write raw bytes to the client now (from the test's thread). */
void qmptestPeerWrite(qmptestPeer *peer, const char *data, gsize len);

/* Commands the server received, in order ("name"). */
GPtrArray *qmptestPeerCommands(qmptestPeer *peer);

/* A reply {"return": @ret_json, "id": @id} with a newline. */
char *qmptestReturn(const char *id, const char *ret_json);
