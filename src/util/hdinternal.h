/*
 * hdinternal.h: definitions shared by every hostdev source file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <errno.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gi18n-lib.h>

#include "hostdev/error.h"

/* Close an fd on scope exit: `g_auto(hdFd) fd = open(...)`; errno survives. */
typedef int hdFd;
static inline void
hdFdClose(hdFd fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(hdFd, hdFdClose, -1)
