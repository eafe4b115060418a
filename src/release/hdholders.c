/*
 * hdholders.c: which processes hold a VFIO group or device
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "hdinternal.h"
#include "hdholders.h"

#define HD_DELETED_SUFFIX " (deleted)"


/* readlink() of an fd link; the kernel appends " (deleted)" when the file
 * was unlinked while open, and the holder still holds it. */
static char *
hdHoldersReadFdLink(const char *link)
{
    char buf[PATH_MAX + sizeof(HD_DELETED_SUFFIX)];
    ssize_t len = readlink(link, buf, sizeof(buf) - 1);

    if (len < 0)
        return NULL;
    buf[len] = '\0';
    if (g_str_has_suffix(buf, HD_DELETED_SUFFIX))
        buf[len - strlen(HD_DELETED_SUFFIX)] = '\0';
    return g_strdup(buf);
}


static gboolean
hdHoldersProcessHolds(const char *proc_root, const char *pid, const char *const *paths)
{
    g_autofree char *fddir = g_build_filename(proc_root, pid, "fd", NULL);
    g_autoptr(GDir) dir = g_dir_open(fddir, 0, NULL);
    const char *name;

    /* The process may have exited, or be another user's: neither holds. */
    if (!dir)
        return FALSE;
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *link = g_build_filename(fddir, name, NULL);
        g_autofree char *target = hdHoldersReadFdLink(link);

        if (target && g_strv_contains(paths, target))
            return TRUE;
    }
    return FALSE;
}


static gboolean
hdHoldersIsPid(const char *name)
{
    const char *p;

    if (!*name)
        return FALSE;
    for (p = name; *p; p++) {
        if (!g_ascii_isdigit(*p))
            return FALSE;
    }
    return TRUE;
}


GArray *
hdHoldersFind(const char *proc_root, pid_t pid, const char *const *paths, GError **error)
{
    g_autoptr(GArray) pids = g_array_new(FALSE, FALSE, sizeof(pid_t));
    g_autoptr(GDir) dir = NULL;
    g_autoptr(GError) local = NULL;
    const char *name;

    if (pid > 0) {
        g_autofree char *spid = g_strdup_printf("%d", (int)pid);

        if (hdHoldersProcessHolds(proc_root, spid, paths))
            g_array_append_val(pids, pid);
        return g_steal_pointer(&pids);
    }

    if (!(dir = g_dir_open(proc_root, 0, &local))) {
        hdErrorSetSystem(error, local->code == G_FILE_ERROR_NOENT ? ENOENT : EACCES,
                         _("cannot list processes in '%1$s'"), proc_root);
        return NULL;
    }
    while ((name = g_dir_read_name(dir))) {
        if (!hdHoldersIsPid(name))
            continue;
        if (hdHoldersProcessHolds(proc_root, name, paths)) {
            pid_t holder = (pid_t)strtol(name, NULL, 10);
            g_array_append_val(pids, holder);
        }
    }
    return g_steal_pointer(&pids);
}


GStrv
hdGroupHolderPaths(hdHost *host, unsigned int group, GError **error)
{
    g_autoptr(GStrvBuilder) builder = g_strv_builder_new();
    g_autoptr(GArray) members = hdIOMMUGroupGetMembers(host, group, error);
    g_autofree char *node = NULL;
    guint i;

    if (!members)
        return NULL;
    node = hdIOMMUGroupDevPath(host, group);
    g_strv_builder_add(builder, node);
    for (i = 0; i < members->len; i++) {
        g_autofree char *cdev = NULL;

        if (!hdPCIDeviceGetVFIOCdev(host, &g_array_index(members, hdPCIAddress, i), &cdev,
                                    error))
            return NULL;
        if (cdev)
            g_strv_builder_add(builder, cdev);
    }
    return g_strv_builder_end(builder);
}


gboolean
hdGroupOpenProbe(hdHost *host, unsigned int group, gboolean *held)
{
    g_autofree char *node = hdIOMMUGroupDevPath(host, group);
    g_auto(hdFd) fd = open(node, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    *held = fd < 0 && errno == EBUSY;
    if (fd < 0 && errno != EBUSY && errno != ENOENT)
        g_debug("probe open of %s: %s", node, g_strerror(errno));
    return fd >= 0 || errno == EBUSY || errno == ENOENT;
}


gboolean
hdGroupFreeByProc(hdHost *host, unsigned int group, gboolean *free_, gpointer opaque,
                  GError **error)
{
    g_auto(GStrv) paths = NULL;
    g_autoptr(GArray) pids = NULL;
    gboolean held = FALSE;

    /* The probe first: it sees every holder, a vfio device fd alone
     * included (/proc shows that only as anon_inode:[vfio-device]), and
     * the kernel still releasing; it costs one open, a /proc scan reads
     * every fd of every process. */
    if (hdGroupOpenProbe(host, group, &held) && held) {
        *free_ = FALSE;
        return TRUE;
    }
    if (!(paths = hdGroupHolderPaths(host, group, error)) ||
        !(pids = hdHoldersFind(HD_PROC_ROOT, 0, (const char *const *)paths, error)))
        return FALSE;
    *free_ = pids->len == 0;
    return TRUE;
}
