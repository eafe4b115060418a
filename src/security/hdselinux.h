/*
 * hdselinux.h: SELinux labels of VFIO nodes (libselinux)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* is_selinux_enabled() > 0. */
gboolean hdSELinuxEnabled(void);

/* The raw context of @path.  A missing file is not an error: *label is
 * NULL and *exists FALSE. */
gboolean hdSELinuxGetLabel(const char *path, char **label, gboolean *exists,
                           GError **error);

/* Set the raw context of @path.  A missing file: *exists FALSE, success
 * (a node that vanished carries no label). */
gboolean hdSELinuxSetLabel(const char *path, const char *label, gboolean *exists,
                           GError **error);

G_END_DECLS
