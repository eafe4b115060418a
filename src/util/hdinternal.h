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

/* Whether @s (@len bytes, or up to its NUL if @len < 0) is valid UTF-8
 * without control characters (Unicode's Cc: U+0000-U+001F and
 * U+007F-U+009F, which terminals interpret), but for tab, line feed and
 * carriage return when @layout (a document's text).  On FALSE, *@bad is
 * the first such character, or (gunichar)-1 if @s is not valid UTF-8. */
gboolean hdStringIsText(const char *s, gssize len, gboolean layout, gunichar *bad);
