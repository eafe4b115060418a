/*
 * simfs.h: the FUSE file system of the simulated host
 *
 * Turns paths under the mount point into the model's devices, groups and
 * kernel entry points.  The layout is in docs/simhost.rst ("The tree").
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "simmodel.h"

typedef struct _simFs simFs;

/* @ready_fd: where to write "ready\n" once the kernel talks to us, or -1. */
simFs *simFsNew(simModel *model, int ready_fd);
void simFsFree(simFs *fs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(simFs, simFsFree)

/* The operations; fuse_session_new()'s userdata must be the simFs. */
const struct fuse_lowlevel_ops *simFsOperations(void);
