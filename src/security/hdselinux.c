/*
 * hdselinux.c: SELinux labels of VFIO nodes (libselinux)
 *
 * Raw contexts only (getfilecon_raw/setfilecon_raw): what we remember is
 * exactly what we put back, without mcstrans translation in between.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <selinux/selinux.h>

#include "hdinternal.h"
#include "hdselinux.h"


gboolean
hdSELinuxEnabled(void)
{
    return is_selinux_enabled() > 0;
}


gboolean
hdSELinuxGetLabel(const char *path, char **label, gboolean *exists, GError **error)
{
    char *con = NULL;

    *label = NULL;
    *exists = TRUE;
    if (getfilecon_raw(path, &con) < 0) {
        if (errno == ENOENT) {
            *exists = FALSE;
            return TRUE;
        }
        hdErrorSetSystem(error, errno, _("cannot read the SELinux label of '%1$s'"), path);
        return FALSE;
    }
    *label = g_strdup(con);
    freecon(con);
    return TRUE;
}


gboolean
hdSELinuxSetLabel(const char *path, const char *label, gboolean *exists, GError **error)
{
    *exists = TRUE;
    if (setfilecon_raw(path, label) < 0) {
        if (errno == ENOENT) {
            *exists = FALSE;
            return TRUE;
        }
        hdErrorSetSystem(error, errno, _("cannot set SELinux label '%1$s' on '%2$s'"),
                         label, path);
        return FALSE;
    }
    return TRUE;
}
