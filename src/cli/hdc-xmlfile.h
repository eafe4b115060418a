/*
 * hdc-xmlfile.h: the XML file a user names, as the UTF-8 text a request
 * carries
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The regular file @path (at most @max bytes; a FIFO or a device is refused
 * before it is read) as UTF-8 text: converted from the encoding its byte
 * order mark or XML declaration says, the declaration then saying UTF-8.
 * A file that cannot be decoded, or holds a NUL, is refused. */
char *hdcXmlFileRead(const char *path, gsize max, GError **error);

G_END_DECLS
