/*
 * simnetlink.h: the simulated host's rtnetlink, on a UNIX socket
 * (simnetlink.c, docs/simhost.rst "Network interfaces")
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "simmodel.h"

G_BEGIN_DECLS

typedef struct _simNetlink simNetlink;

/* Serve rtnetlink for @model on a SOCK_SEQPACKET socket at @path (replaced
 * if a stale one is there; mode 0666: reading links needs no privilege). */
simNetlink *simNetlinkStart(simModel *model, const char *path, GError **error);
/* Hang up on every client, wait for their threads, remove the socket. */
void simNetlinkStop(simNetlink *nl);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(simNetlink, simNetlinkStop)

G_END_DECLS
