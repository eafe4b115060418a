/*
 * hdfile.c: small file helpers: sysfs attribute reads and writes, links,
 * atomic replacement of a file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hdinternal.h"
#include "hdfile.h"


/* Read @fd (opened from @path) to its end into @buf, at most @max bytes:
 * a file that turns out bigger is refused as soon as it is noticed,
 * whatever its size said before (it may grow, or report none: sysfs). */
static gboolean
hdFileReadMax(int fd, const char *path, gsize max, GString *buf, GError **error)
{
    char chunk[16384];

    for (;;) {
        ssize_t got = read(fd, chunk, MIN(sizeof(chunk), max + 1 - buf->len));

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            hdErrorSetSystem(error, errno, _("cannot read '%1$s'"), path);
            return FALSE;
        }
        if (got == 0)
            return TRUE;
        g_string_append_len(buf, chunk, got);
        if (buf->len > max) {
            hdErrorSetSystem(error, EFBIG,
                             _("'%1$s' is larger than %2$" G_GSIZE_FORMAT " bytes"),
                             path, max);
            return FALSE;
        }
    }
}


gboolean
hdFileReadAttr(const char *path, char **contents, GError **error)
{
    g_autoptr(GString) buf = g_string_sized_new(64);
    g_auto(hdFd) fd = -1;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot open '%1$s'"), path);
        return FALSE;
    }
    if (!hdFileReadMax(fd, path, HD_FILE_ATTR_MAX, buf, error))
        return FALSE;
    if (memchr(buf->str, '\0', buf->len)) {
        hdErrorSetSystem(error, EINVAL, _("'%1$s' contains a NUL byte"), path);
        return FALSE;
    }

    if (buf->len > 0 && buf->str[buf->len - 1] == '\n')
        g_string_truncate(buf, buf->len - 1);
    *contents = g_string_free(g_steal_pointer(&buf), FALSE);
    return TRUE;
}


static const char *
hdFileKind(mode_t mode)
{
    if (S_ISDIR(mode))
        return _("a directory");
    if (S_ISFIFO(mode))
        return _("a FIFO");
    if (S_ISCHR(mode))
        return _("a character device");
    if (S_ISBLK(mode))
        return _("a block device");
    if (S_ISSOCK(mode))
        return _("a socket");
    return _("a special file");
}


gboolean
hdFileReadRegular(const char *path, gsize max, char **contents, gsize *len, GError **error)
{
    g_autoptr(GString) buf = NULL;
    g_auto(hdFd) fd = -1;
    struct stat sb;

    /* O_NONBLOCK: opening a FIFO must not wait for a writer.  It changes
     * nothing for a regular file. */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot open '%1$s'"), path);
        return FALSE;
    }
    if (fstat(fd, &sb) < 0) {
        hdErrorSetSystem(error, errno, _("cannot stat '%1$s'"), path);
        return FALSE;
    }
    if (!S_ISREG(sb.st_mode)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("'%1$s' is %2$s, not a regular file"), path,
                   hdFileKind(sb.st_mode));
        return FALSE;
    }
    buf = g_string_sized_new(MIN((gsize)sb.st_size, max) + 1);
    if (!hdFileReadMax(fd, path, max, buf, error))
        return FALSE;
    *len = buf->len;
    *contents = g_string_free(g_steal_pointer(&buf), FALSE);
    return TRUE;
}


gboolean
hdFileWriteAttr(const char *path, const char *value, GError **error)
{
    gsize len;
    ssize_t written;
    g_autofree char *shown = NULL;
    g_auto(hdFd) fd = -1;

    /* A zero-length write never reaches the kernel's store function. */
    g_return_val_if_fail(value && *value, FALSE);

    len = strlen(value);
    /* Values like "\n" must stay readable in the message. */
    shown = g_strescape(value, NULL);

    if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot open '%1$s' to write '%2$s'"), path, shown);
        return FALSE;
    }

    /* One write(): sysfs hands each write to the store function as one
     * command, so a retried remainder would be a second, bogus command. */
    if ((written = write(fd, value, len)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot write '%1$s' to '%2$s'"), shown, path);
        return FALSE;
    }
    if ((gsize) written != len) {
        hdErrorSetSystem(error, EIO,
                         _("cannot write '%1$s' to '%2$s': only %3$zd of %4$zu bytes written"),
                         shown, path, written, len);
        return FALSE;
    }

    /* Some stores report their result only when the file is closed. */
    if (close(fd) < 0) {
        fd = -1;
        hdErrorSetSystem(error, errno, _("cannot write '%1$s' to '%2$s': close failed"),
                         shown, path);
        return FALSE;
    }
    fd = -1;
    return TRUE;
}


gboolean
hdFileReadLinkName(const char *path, gboolean optional, char **name, GError **error)
{
    char target[PATH_MAX];
    ssize_t len;

    if ((len = readlink(path, target, sizeof(target))) < 0) {
        if (errno == ENOENT && optional) {
            *name = NULL;
            return TRUE;
        }
        hdErrorSetSystem(error, errno, _("cannot read link '%1$s'"), path);
        return FALSE;
    }
    if ((gsize) len >= sizeof(target)) {
        hdErrorSetSystem(error, ENAMETOOLONG, _("cannot read link '%1$s'"), path);
        return FALSE;
    }
    target[len] = '\0';

    *name = g_path_get_basename(target);
    return TRUE;
}


/* Fill the freshly created temporary file @fd and make it durable. */
static gboolean
hdFileFillTemp(int fd, const char *tmp, const char *data, gsize len, mode_t mode,
               GError **error)
{
    gsize done = 0;

    /* mkostemp() creates 0600; the caller's mode applies as given. */
    if (fchmod(fd, mode) < 0) {
        hdErrorSetSystem(error, errno, _("cannot set the mode of '%1$s'"), tmp);
        return FALSE;
    }

    /* A regular file, unlike a sysfs attribute, may take data piecewise. */
    while (done < len) {
        ssize_t written = write(fd, data + done, len - done);

        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0) {
            hdErrorSetSystem(error, errno, _("cannot write to '%1$s'"), tmp);
            return FALSE;
        }
        done += written;
    }

    if (fsync(fd) < 0) {
        hdErrorSetSystem(error, errno, _("cannot sync '%1$s'"), tmp);
        return FALSE;
    }
    return TRUE;
}


/* Make the rename into @dir durable. */
static gboolean
hdFileSyncDir(const char *dir, GError **error)
{
    g_auto(hdFd) fd = -1;

    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot open directory '%1$s'"), dir);
        return FALSE;
    }
    if (fsync(fd) < 0) {
        hdErrorSetSystem(error, errno, _("cannot sync directory '%1$s'"), dir);
        return FALSE;
    }
    return TRUE;
}


gboolean
hdFileWriteAtomic(const char *path, const char *data, gsize len, mode_t mode,
                  GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *base = g_path_get_basename(path);
    /* Hidden, so that a reader listing the directory skips a leftover. */
    g_autofree char *tmp = g_strdup_printf("%s/.%s.XXXXXX", dir, base);
    g_auto(hdFd) fd = -1;

    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot create a temporary file for '%1$s'"), path);
        return FALSE;
    }

    if (!hdFileFillTemp(fd, tmp, data, len, mode, error))
        goto error;

    if (close(fd) < 0) {
        fd = -1;
        hdErrorSetSystem(error, errno, _("cannot close '%1$s'"), tmp);
        goto error;
    }
    fd = -1;

    if (rename(tmp, path) < 0) {
        hdErrorSetSystem(error, errno, _("cannot rename '%1$s' to '%2$s'"), tmp, path);
        goto error;
    }

    return hdFileSyncDir(dir, error);

 error:
    unlink(tmp);
    return FALSE;
}
