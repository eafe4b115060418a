/*
 * test-file.c: the small file helpers of src/util/hdfile.c (no host needed)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "hostdev/error.h"
#include "util/hdfile.h"

typedef struct {
    char *dir;
} Fixture;


static void
fixture_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    f->dir = g_dir_make_tmp("hdtest-file-XXXXXX", &err);
    g_assert_no_error(err);
}


static void
remove_tree(const char *path)
{
    GDir *dir;
    const char *entry;

    if (!g_file_test(path, G_FILE_TEST_IS_DIR) || g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
        g_remove(path);
        return;
    }
    dir = g_dir_open(path, 0, NULL);
    while (dir && (entry = g_dir_read_name(dir))) {
        g_autofree char *child = g_build_filename(path, entry, NULL);

        remove_tree(child);
    }
    if (dir)
        g_dir_close(dir);
    g_rmdir(path);
}


static void
fixture_teardown(Fixture *f, gconstpointer data)
{
    remove_tree(f->dir);
    g_free(f->dir);
}


static gint
compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


/* The names in @dir, sorted, joined by spaces. */
static char *
list_dir(const char *path)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    GDir *dir = g_dir_open(path, 0, NULL);
    const char *entry;

    g_assert_nonnull(dir);
    while ((entry = g_dir_read_name(dir)))
        g_ptr_array_add(names, g_strdup(entry));
    g_dir_close(dir);

    g_ptr_array_sort(names, compare_names);
    g_ptr_array_add(names, NULL);
    return g_strjoinv(" ", (char **) names->pdata);
}


static void
write_file(const char *path, const char *contents, gssize len)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(g_file_set_contents(path, contents, len, &err));
    g_assert_no_error(err);
}


static void
test_atomic_new(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "state.json", NULL);
    g_autofree char *contents = NULL;
    g_autofree char *listing = NULL;
    g_autoptr(GError) err = NULL;
    const char text[] = "{ \"devices\": [] }\n";
    struct stat sb;

    g_assert_true(hdFileWriteAtomic(path, text, strlen(text), 0640, &err));
    g_assert_no_error(err);

    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, text);
    g_assert_cmpint(stat(path, &sb), ==, 0);
    g_assert_cmpint(sb.st_mode & 07777, ==, 0640);

    listing = list_dir(f->dir);
    g_assert_cmpstr(listing, ==, "state.json");
}


static void
test_atomic_replace(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "state", NULL);
    g_autofree char *contents = NULL;
    g_autofree char *listing = NULL;
    gsize len;
    /* Binary data, NUL included: the length counts, not strlen(). */
    const char binary[] = { 'a', '\0', 'b', '\n' };

    write_file(path, "a much longer old content that must vanish entirely", -1);

    g_assert_true(hdFileWriteAtomic(path, "new", 3, 0600, NULL));
    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, "new");
    g_clear_pointer(&contents, g_free);

    g_assert_true(hdFileWriteAtomic(path, binary, sizeof(binary), 0600, NULL));
    g_assert_true(g_file_get_contents(path, &contents, &len, NULL));
    g_assert_cmpmem(contents, len, binary, sizeof(binary));
    g_clear_pointer(&contents, g_free);

    g_assert_true(hdFileWriteAtomic(path, "", 0, 0600, NULL));
    g_assert_true(g_file_get_contents(path, &contents, &len, NULL));
    g_assert_cmpuint(len, ==, 0);

    listing = list_dir(f->dir);
    g_assert_cmpstr(listing, ==, "state");
}


static void
test_atomic_no_dir(Fixture *f, gconstpointer data)
{
    g_autofree char *missing = g_build_filename(f->dir, "missing", NULL);
    g_autofree char *path = g_build_filename(missing, "state", NULL);
    g_autofree char *listing = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_false(hdFileWriteAtomic(path, "x", 1, 0600, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, ENOENT);
    g_assert_cmpint(hdErrorErrno(err), ==, ENOENT);
    g_assert_nonnull(strstr(err->message, path));

    g_assert_false(g_file_test(missing, G_FILE_TEST_EXISTS));
    listing = list_dir(f->dir);
    g_assert_cmpstr(listing, ==, "");
}


/* The rename fails (the target is a non-empty directory): the old target
 * stays and no temporary file is left behind. */
static void
test_atomic_rename_fails(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "state", NULL);
    g_autofree char *inside = g_build_filename(path, "keep", NULL);
    g_autofree char *listing = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(g_mkdir(path, 0700), ==, 0);
    write_file(inside, "kept", -1);

    g_assert_false(hdFileWriteAtomic(path, "x", 1, 0600, &err));
    g_assert_nonnull(err);
    g_assert_true(err->domain == HD_SYSTEM_ERROR);
    g_assert_cmpint(err->code, ==, EISDIR);
    g_assert_nonnull(strstr(err->message, path));

    listing = list_dir(f->dir);
    g_assert_cmpstr(listing, ==, "state");
    g_assert_true(g_file_test(inside, G_FILE_TEST_IS_REGULAR));
}


static void
test_attr_read(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "vendor", NULL);
    g_autofree char *value = NULL;
    g_autoptr(GError) err = NULL;

    write_file(path, "0x10de\n", -1);
    g_assert_true(hdFileReadAttr(path, &value, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(value, ==, "0x10de");
    g_clear_pointer(&value, g_free);

    /* Only the kernel's one trailing newline goes. */
    write_file(path, "a b\n\n", -1);
    g_assert_true(hdFileReadAttr(path, &value, NULL));
    g_assert_cmpstr(value, ==, "a b\n");
    g_clear_pointer(&value, g_free);

    write_file(path, "", -1);
    g_assert_true(hdFileReadAttr(path, &value, NULL));
    g_assert_cmpstr(value, ==, "");
}


static void
test_attr_read_errors(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "attr", NULL);
    g_autofree char *missing = g_build_filename(f->dir, "missing", NULL);
    g_autofree char *big = g_strnfill(HD_FILE_ATTR_MAX + 1, 'x');
    g_autofree char *value = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_false(hdFileReadAttr(missing, &value, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, ENOENT);
    g_assert_nonnull(strstr(err->message, missing));
    g_clear_error(&err);

    write_file(path, big, -1);
    g_assert_false(hdFileReadAttr(path, &value, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, EFBIG);
    g_clear_error(&err);

    /* Exactly a page is still an attribute. */
    write_file(path, big, HD_FILE_ATTR_MAX);
    g_assert_true(hdFileReadAttr(path, &value, NULL));
    g_assert_cmpuint(strlen(value), ==, HD_FILE_ATTR_MAX);
    g_clear_pointer(&value, g_free);

    write_file(path, "ab\0cd", 5);
    g_assert_false(hdFileReadAttr(path, &value, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, EINVAL);
    g_clear_error(&err);

    g_assert_false(hdFileReadAttr(f->dir, &value, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, EISDIR);
    g_assert_null(value);
}


/* A file a user names: regular files only, refused before reading
 * otherwise (a FIFO must not block, /dev/zero never ends), and the bound
 * holds while reading, whatever the size stat() gave. */
static void
test_regular_read(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "dom.xml", NULL);
    g_autofree char *fifo = g_build_filename(f->dir, "fifo", NULL);
    g_autofree char *big = g_strnfill(100, 'x');
    g_autofree char *contents = NULL;
    g_autoptr(GError) err = NULL;
    gsize len = 0;

    write_file(path, "ab\0cd", 5);
    g_assert_true(hdFileReadRegular(path, 5, &contents, &len, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(len, ==, 5);
    g_assert_cmpmem(contents, 6, "ab\0cd\0", 6);
    g_clear_pointer(&contents, g_free);

    write_file(path, big, -1);
    g_assert_false(hdFileReadRegular(path, 99, &contents, &len, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, EFBIG);
    g_assert_nonnull(strstr(err->message, path));
    g_clear_error(&err);
    g_assert_null(contents);

    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    g_assert_false(hdFileReadRegular(fifo, 1024, &contents, &len, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "is a FIFO"));
    g_clear_error(&err);

    g_assert_false(hdFileReadRegular("/dev/zero", 1024, &contents, &len, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "character device"));
    g_clear_error(&err);

    g_assert_false(hdFileReadRegular(f->dir, 1024, &contents, &len, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_clear_error(&err);

    /* procfs reports a size of 0 and has more: the bound is what counts. */
    g_assert_false(hdFileReadRegular("/proc/self/maps", 64, &contents, &len, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, EFBIG);
    g_assert_null(contents);
}


static void
test_attr_write(Fixture *f, gconstpointer data)
{
    g_autofree char *path = g_build_filename(f->dir, "driver_override", NULL);
    g_autofree char *contents = NULL;
    g_autoptr(GError) err = NULL;

    /* Sysfs files are neither created nor truncated: a regular file shows
     * that the helper does neither. */
    write_file(path, "xyz", -1);
    g_assert_true(hdFileWriteAttr(path, "ab", &err));
    g_assert_no_error(err);
    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, "abz");
}


static void
test_attr_write_errors(Fixture *f, gconstpointer data)
{
    g_autofree char *missing = g_build_filename(f->dir, "unbind", NULL);
    g_autofree char *listing = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_false(hdFileWriteAttr(missing, "\n", &err));
    g_assert_error(err, HD_SYSTEM_ERROR, ENOENT);
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, missing));
    g_assert_nonnull(strstr(err->message, "'\\n'"));
    g_clear_error(&err);
    listing = list_dir(f->dir);
    g_assert_cmpstr(listing, ==, "");

    if (g_file_test("/dev/full", G_FILE_TEST_EXISTS)) {
        g_assert_false(hdFileWriteAttr("/dev/full", "0000:01:00.0", &err));
        g_assert_error(err, HD_SYSTEM_ERROR, ENOSPC);
        g_test_message("%s", err->message);
        g_assert_nonnull(strstr(err->message, "cannot write '0000:01:00.0' to '/dev/full'"));
    }
}


static void
test_link_name(Fixture *f, gconstpointer data)
{
    g_autofree char *link = g_build_filename(f->dir, "driver", NULL);
    g_autofree char *missing = g_build_filename(f->dir, "iommu_group", NULL);
    g_autofree char *regular = g_build_filename(f->dir, "vendor", NULL);
    g_autofree char *name = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(symlink("../../../bus/pci/drivers/vfio-pci", link), ==, 0);
    g_assert_true(hdFileReadLinkName(link, FALSE, &name, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(name, ==, "vfio-pci");
    g_clear_pointer(&name, g_free);

    g_assert_true(hdFileReadLinkName(missing, TRUE, &name, &err));
    g_assert_no_error(err);
    g_assert_null(name);

    g_assert_false(hdFileReadLinkName(missing, FALSE, &name, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, ENOENT);
    g_assert_nonnull(strstr(err->message, missing));
    g_clear_error(&err);

    write_file(regular, "0x10de\n", -1);
    g_assert_false(hdFileReadLinkName(regular, TRUE, &name, &err));
    g_assert_error(err, HD_SYSTEM_ERROR, EINVAL);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

#define ADD(name, func) \
    g_test_add("/file/" name, Fixture, NULL, fixture_setup, func, fixture_teardown)

    ADD("atomic/new", test_atomic_new);
    ADD("atomic/replace", test_atomic_replace);
    ADD("atomic/no-dir", test_atomic_no_dir);
    ADD("atomic/rename-fails", test_atomic_rename_fails);
    ADD("attr/read", test_attr_read);
    ADD("attr/read-errors", test_attr_read_errors);
    ADD("attr/write", test_attr_write);
    ADD("regular/read", test_regular_read);
    ADD("attr/write-errors", test_attr_write_errors);
    ADD("link/name", test_link_name);

#undef ADD

    return g_test_run();
}
