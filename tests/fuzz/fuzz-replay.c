/*
 * fuzz-replay.c: run a fuzz target on files, without libFuzzer
 *
 *   fuzz-replay-TARGET PATH...   (a file, or a directory of files)
 *
 * The `fuzz` suite runs every target on its seed corpus (with gcc, under
 * ASan+UBSan in `make check`), so every input that once crashed a target
 * stays a regression test.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <stdio.h>

#include "fuzz.h"


static guint
replayPath(const char *path)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *data = NULL;
    gsize len = 0;

    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        g_autoptr(GDir) dir = g_dir_open(path, 0, &error);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        const char *name;
        guint count = 0;
        guint i;

        if (!dir)
            g_error("%s", error->message);
        while ((name = g_dir_read_name(dir)))
            g_ptr_array_add(names, g_strdup(name));
        /* Sorted: a failure names the same first input on every machine. */
        g_ptr_array_sort(names, (GCompareFunc)g_strcmp0);
        for (i = 0; i < names->len; i++) {
            g_autofree char *child = g_build_filename(path, g_ptr_array_index(names, i), NULL);

            count += replayPath(child);
        }
        return count;
    }
    if (!g_file_get_contents(path, &data, &len, &error))
        g_error("%s", error->message);
    /* An exact-size heap copy: ASan then catches a read past the end. */
    {
        g_autofree uint8_t *copy = g_memdup2(data, len ? len : 1);

        LLVMFuzzerTestOneInput(copy, len);
    }
    return 1;
}


int
main(int argc, char **argv)
{
    guint count = 0;
    int i;

    LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (i = 1; i < argc; i++)
        count += replayPath(argv[i]);
    if (count == 0) {
        fprintf(stderr, "no input found\n");
        return 1;
    }
    printf("replayed %u inputs\n", count);
    return 0;
}
