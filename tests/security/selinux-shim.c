/*
 * selinux-shim.c: LD_PRELOAD stand-in for the libselinux calls hostdev
 * makes, as libvirt's tests/securityselinuxhelper.c does
 *
 * Labels live in the user.hdtest.selinux extended attribute, so they go
 * with the inode as real labels do.  A file system without user xattrs
 * (the simulated host's FUSE mount) keeps them in memory instead, keyed by
 * path, inode and ctime so a node that is removed and created again starts
 * over with the default label.
 *
 *   HD_SELINUX_SHIM_ENABLED=1   is_selinux_enabled() returns 1 (else 0)
 *   HD_SELINUX_SHIM_FAIL=PATH   setfilecon_raw() on PATH fails with EIO
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "selinux-shim.h"

#define SHIM_XATTR "user.hdtest.selinux"
#define SHIM_MAX 256

typedef struct {
    char path[512];
    ino_t ino;
    struct timespec ctime;
    char label[256];
} ShimEntry;

static pthread_mutex_t shimLock = PTHREAD_MUTEX_INITIALIZER;
static ShimEntry shimEntries[SHIM_MAX];


int is_selinux_enabled(void);
int getfilecon_raw(const char *path, char **con);
int setfilecon_raw(const char *path, const char *con);


int
is_selinux_enabled(void)
{
    const char *on = getenv("HD_SELINUX_SHIM_ENABLED");

    return on && strcmp(on, "1") == 0;
}


static ShimEntry *
shimFind(const char *path, const struct stat *sb, int create)
{
    ShimEntry *free_slot = NULL;
    int i;

    for (i = 0; i < SHIM_MAX; i++) {
        ShimEntry *e = &shimEntries[i];

        if (!e->path[0]) {
            if (!free_slot)
                free_slot = e;
            continue;
        }
        if (strcmp(e->path, path) != 0)
            continue;
        if (e->ino == sb->st_ino && e->ctime.tv_sec == sb->st_ctim.tv_sec &&
            e->ctime.tv_nsec == sb->st_ctim.tv_nsec)
            return e;
        e->path[0] = '\0';   /* a new file at the same path */
        if (!free_slot)
            free_slot = e;
    }
    if (!create || !free_slot)
        return NULL;
    snprintf(free_slot->path, sizeof(free_slot->path), "%s", path);
    free_slot->ino = sb->st_ino;
    free_slot->ctime = sb->st_ctim;
    return free_slot;
}


int
getfilecon_raw(const char *path, char **con)
{
    char buf[256];
    struct stat sb;
    ssize_t len;

    if (stat(path, &sb) < 0)
        return -1;
    len = getxattr(path, SHIM_XATTR, buf, sizeof(buf) - 1);
    if (len < 0 && errno == ENOTSUP) {
        ShimEntry *e;

        pthread_mutex_lock(&shimLock);
        e = shimFind(path, &sb, 0);
        snprintf(buf, sizeof(buf), "%s", e ? e->label : HD_SELINUX_SHIM_DEFAULT);
        pthread_mutex_unlock(&shimLock);
        len = strlen(buf);
    } else if (len < 0 && errno == ENODATA) {
        snprintf(buf, sizeof(buf), "%s", HD_SELINUX_SHIM_DEFAULT);
        len = strlen(buf);
    } else if (len < 0) {
        return -1;
    }
    buf[len] = '\0';
    if (!(*con = strdup(buf)))
        return -1;
    return (int)len + 1;
}


int
setfilecon_raw(const char *path, const char *con)
{
    const char *fail = getenv("HD_SELINUX_SHIM_FAIL");
    struct stat sb;

    if (fail && strcmp(fail, path) == 0) {
        errno = EIO;
        return -1;
    }
    if (stat(path, &sb) < 0)
        return -1;
    if (setxattr(path, SHIM_XATTR, con, strlen(con), 0) < 0) {
        ShimEntry *e;

        if (errno != ENOTSUP)
            return -1;
        pthread_mutex_lock(&shimLock);
        if ((e = shimFind(path, &sb, 1)))
            snprintf(e->label, sizeof(e->label), "%s", con);
        pthread_mutex_unlock(&shimLock);
        if (!e) {
            errno = ENOSPC;
            return -1;
        }
    }
    return 0;
}
