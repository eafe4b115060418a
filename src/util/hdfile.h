/*
 * hdfile.h: small file helpers: sysfs attribute reads and writes, links,
 * atomic replacement of a file
 *
 * All of them report failures as HD_SYSTEM_ERROR with errno as the code and
 * the path in the message, and keep no state (safe from any thread).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include <glib.h>

G_BEGIN_DECLS

/* Sysfs attributes are at most a page; anything larger is not one. */
#define HD_FILE_ATTR_MAX 4096

/* Read a sysfs attribute (at most HD_FILE_ATTR_MAX bytes) into *contents,
 * without the kernel's trailing newline. */
gboolean hdFileReadAttr(const char *path, char **contents, GError **error);

/* Read the regular file @path, at most @max bytes, into *contents (with a
 * NUL added after *len bytes).  Anything else (a FIFO, a device such as
 * /dev/zero, a directory) is refused before anything is read, and the
 * bound holds while reading: a file that grows past @max is refused, never
 * read whole.  For files a user names. */
gboolean hdFileReadRegular(const char *path, gsize max, char **contents, gsize *len,
                           GError **error);

/* Write @value to a sysfs attribute in one write(): open O_WRONLY (sysfs
 * files are never created or truncated), write, close.  A short write or a
 * failing close() is an error, because sysfs reports the result of the
 * store there.  The message says what was written where. */
gboolean hdFileWriteAttr(const char *path, const char *value, GError **error);

/* The last component of the target of symlink @path in *name.  When
 * @optional and the link does not exist, *name is NULL and this succeeds. */
gboolean hdFileReadLinkName(const char *path, gboolean optional,
                            char **name, GError **error);

/* Replace @path with @data so that a crash leaves either the old or the new
 * contents: a temporary file in the same directory, written and fsync()ed,
 * renamed over @path, then the directory fsync()ed.  On failure the
 * temporary file is removed and @path is untouched. */
gboolean hdFileWriteAtomic(const char *path, const char *data, gsize len,
                           mode_t mode, GError **error);

G_END_DECLS
