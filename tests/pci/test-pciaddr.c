/*
 * test-pciaddr.c: PCI address parsing and formatting (no host needed)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include <glib.h>

#include "hostdev/error.h"
#include "hostdev/pci.h"

typedef struct {
    const char *input;
    hdPCIAddress addr;
    const char *canonical;
} ValidAddress;

static const ValidAddress valid_addresses[] = {
    { "0000:00:00.0", { 0, 0, 0, 0 }, "0000:00:00.0" },
    { "0000:01:00.1", { 0, 1, 0, 1 }, "0000:01:00.1" },
    { "ffff:ff:1f.7", { 0xffff, 0xff, 0x1f, 7 }, "ffff:ff:1f.7" },
    { "FFFF:FF:1F.7", { 0xffff, 0xff, 0x1f, 7 }, "ffff:ff:1f.7" },
    { "0000:aB:1c.3", { 0, 0xab, 0x1c, 3 }, "0000:ab:1c.3" },
    { "10000:00:02.0", { 0x10000, 0, 2, 0 }, "10000:00:02.0" },
    { "0010000:e1:00.0", { 0x10000, 0xe1, 0, 0 }, "10000:e1:00.0" },
    { "00010000:e1:00.0", { 0x10000, 0xe1, 0, 0 }, "10000:e1:00.0" },
    { "ffffffff:ff:1f.7", { 0xffffffff, 0xff, 0x1f, 7 }, "ffffffff:ff:1f.7" },
    { "FFFFFFFF:00:00.0", { 0xffffffff, 0, 0, 0 }, "ffffffff:00:00.0" },
};

static const char *const invalid_addresses[] = {
    "",
    ":",
    "0000",
    "0000:00",
    "0000:00:01",
    "0000:00:01.",
    "0000:00:01.0\n",
    "0000:00:01.0 ",
    " 0000:00:01.0",
    "\t0000:00:01.0",
    "0000:00:01.0/../..",
    "0000:00:01.0/",
    "../0000:00:01.0",
    "./0000:00:01.0",
    "0000:00:01.0x",
    "0000:00:01.00",
    "0000:00:20.0",
    "0000:00:ff.0",
    "0000:00:01.8",
    "0000:00:01.f",
    "0000:100:01.0",
    "0000:1:01.0",
    "0000:01:1.0",
    "000:00:01.0",
    "0:00:01.0",
    "100000000:00:01.0",
    "000000000:00:01.0",
    "0000-00-01.0",
    "0000:00.01:0",
    "0000:00:01:0",
    "+000:00:01.0",
    "-000:00:01.0",
    "0x00:00:01.0",
    "0000:+1:01.0",
    "0000:-1:01.0",
    "0000:0g:01.0",
    "g000:00:01.0",
    "0000:00:01.-1",
    "0000:00:01.+1",
    "pci0000:00",
    "0000:00:01.0\xc3\xa9",
    "\xef\xbc\x90" "000:00:01.0",  /* fullwidth digit zero */
};

typedef struct {
    const char *domain;
    const char *bus;
    const char *slot;
    const char *function;
    hdPCIAddress addr;
} ValidParts;

static const ValidParts valid_parts[] = {
    { "0x0000", "0x01", "0x00", "0x1", { 0, 1, 0, 1 } },
    { "0", "1", "0", "1", { 0, 1, 0, 1 } },
    { "0xffffffff", "0xff", "0x1f", "0x7", { 0xffffffff, 0xff, 0x1f, 7 } },
    { "4294967295", "255", "31", "7", { 0xffffffff, 0xff, 0x1f, 7 } },
    { "0X10000", "0XAB", "0x1F", "7", { 0x10000, 0xab, 0x1f, 7 } },
    { "0x00000000000000000001", "0x0000000ff", "0x00", "0x0", { 1, 0xff, 0, 0 } },
    { NULL, "0x03", "0x00", NULL, { 0, 3, 0, 0 } },
    { "10", "16", "0", "0", { 10, 16, 0, 0 } },
};

typedef struct {
    const char *domain;
    const char *bus;
    const char *slot;
    const char *function;
    const char *quoted;     /* the bad input, as the message must quote it */
} InvalidParts;

static const InvalidParts invalid_parts[] = {
    { "0x0", "0x100", "0x0", "0x0", "0x100" },
    { "0x0", "256", "0x0", "0x0", "256" },
    { "0x0", "0x0", "0x20", "0x0", "0x20" },
    { "0x0", "0x0", "32", "0x0", "32" },
    { "0x0", "0x0", "0x0", "0x8", "0x8" },
    { "0x0", "0x0", "0x0", "8", "8" },
    { "0x100000000", "0x0", "0x0", "0x0", "0x100000000" },
    { "4294967296", "0x0", "0x0", "0x0", "4294967296" },
    { "99999999999999999999999999", "0", "0", "0", "99999999999999999999999999" },
    { "0xffffffffffffffffffffffff", "0", "0", "0", "0xffffffffffffffffffffffff" },
    { "0x", "0", "0", "0", "0x" },
    { "", "0", "0", "0", "" },
    { "0", "", "0", "0", "" },
    { "0", "0", "", "0", "" },
    { "0", "0", "0", "", "" },
    { "+0x1", "0", "0", "0", "+0x1" },
    { "0", "+1", "0", "0", "+1" },
    { "-1", "0", "0", "0", "-1" },
    { "0", "-0x1", "0", "0", "-0x1" },
    { " 1", "0", "0", "0", " 1" },
    { "1 ", "0", "0", "0", "1 " },
    { "0", "0x1 ", "0", "0", "0x1 " },
    { "0", "0x1\n", "0", "0", "0x1\\n" },
    { "0", "010", "0", "0", "010" },
    { "0", "00", "0", "0", "00" },
    { "0", "0x1g", "0", "0", "0x1g" },
    { "0", "1a", "0", "0", "1a" },
    { "0", "0xx1", "0", "0", "0xx1" },
    { "0", "0b1", "0", "0", "0b1" },
    { "0", "0o7", "0", "0", "0o7" },
    { "0", "1e1", "0", "0", "1e1" },
    { "0", "0x0/../..", "0", "0", "0x0/../.." },
    { "0", "x1", "0", "0", "x1" },
    { "0", "0", "0", "0x-1", "0x-1" },
    { "0", "0", "0", "0x+1", "0x+1" },
};


static void
test_parse_valid(gconstpointer data)
{
    const ValidAddress *t = data;
    g_autoptr(GError) err = NULL;
    hdPCIAddress addr;
    char buf[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *str = NULL;
    hdPCIAddress again;

    g_assert_true(hdPCIAddressParse(t->input, &addr, &err));
    g_assert_no_error(err);
    g_assert_true(hdPCIAddressEqual(&addr, &t->addr));

    g_assert_cmpstr(hdPCIAddressFormat(&addr, buf), ==, t->canonical);
    str = hdPCIAddressToString(&addr);
    g_assert_cmpstr(str, ==, t->canonical);

    /* Round trip: the canonical form parses back to the same address. */
    g_assert_true(hdPCIAddressParse(str, &again, NULL));
    g_assert_cmpint(hdPCIAddressCompare(&again, &addr), ==, 0);
}


static void
test_parse_invalid(gconstpointer data)
{
    const char *input = data;
    g_autoptr(GError) err = NULL;
    g_autofree char *escaped = g_strescape(input, NULL);
    g_autofree char *expected = g_strdup_printf("'%s'", escaped);
    hdPCIAddress addr = { 0x1234, 0x12, 0x12, 1 };
    const hdPCIAddress untouched = { 0x1234, 0x12, 0x12, 1 };

    g_assert_false(hdPCIAddressParse(input, &addr, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_test_message("%s", err->message);
    g_assert_true(g_str_has_prefix(err->message, "invalid PCI address '"));
    g_assert_nonnull(strstr(err->message, expected));
    g_assert_true(hdPCIAddressEqual(&addr, &untouched));
}


static void
test_parse_invalid_null_error(void)
{
    hdPCIAddress addr;

    g_assert_false(hdPCIAddressParse("0000:00:20.0", &addr, NULL));
}


static void
test_parse_long(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *hex = g_strnfill(100000, 'f');
    g_autofree char *prefixed = g_strconcat("0000:00:01.0", hex, NULL);
    g_autofree char *domain = g_strconcat(hex, ":00:01.0", NULL);
    hdPCIAddress addr;

    g_assert_false(hdPCIAddressParse(hex, &addr, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    /* The message quotes only the start of a huge input. */
    g_assert_cmpuint(strlen(err->message), <, 300);
    g_assert_nonnull(strstr(err->message, "...'"));
    g_clear_error(&err);

    g_assert_false(hdPCIAddressParse(prefixed, &addr, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_clear_error(&err);

    g_assert_false(hdPCIAddressParse(domain, &addr, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_clear_error(&err);

    g_assert_false(hdPCIAddressParseParts(hex, "0", "0", "0", &addr, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_cmpuint(strlen(err->message), <, 300);
}


static void
test_parts_valid(gconstpointer data)
{
    const ValidParts *t = data;
    g_autoptr(GError) err = NULL;
    hdPCIAddress addr;

    g_assert_true(hdPCIAddressParseParts(t->domain, t->bus, t->slot, t->function,
                                         &addr, &err));
    g_assert_no_error(err);
    g_assert_true(hdPCIAddressEqual(&addr, &t->addr));
}


static void
test_parts_invalid(gconstpointer data)
{
    const InvalidParts *t = data;
    g_autoptr(GError) err = NULL;
    g_autofree char *expected = g_strdup_printf("='%s'", t->quoted);
    hdPCIAddress addr = { 0x1234, 0x12, 0x12, 1 };
    const hdPCIAddress untouched = { 0x1234, 0x12, 0x12, 1 };

    g_assert_false(hdPCIAddressParseParts(t->domain, t->bus, t->slot, t->function,
                                          &addr, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_test_message("%s", err->message);
    g_assert_true(g_str_has_prefix(err->message, "invalid PCI address attribute "));
    g_assert_nonnull(strstr(err->message, expected));
    g_assert_true(hdPCIAddressEqual(&addr, &untouched));
}


static void
test_parts_missing(void)
{
    g_autoptr(GError) err = NULL;
    hdPCIAddress addr;

    g_assert_false(hdPCIAddressParseParts("0", NULL, "0", "0", &addr, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "'bus'"));
    g_clear_error(&err);

    g_assert_false(hdPCIAddressParseParts("0", "0", NULL, "0", &addr, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(err->message, "'slot'"));
}


/* Parts and string forms agree on every valid address. */
static void
test_parts_roundtrip(void)
{
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(valid_addresses); i++) {
        const hdPCIAddress *a = &valid_addresses[i].addr;
        g_autofree char *domain = g_strdup_printf("0x%x", a->domain);
        g_autofree char *bus = g_strdup_printf("%u", a->bus);
        g_autofree char *slot = g_strdup_printf("0x%02x", a->slot);
        g_autofree char *function = g_strdup_printf("%u", a->function);
        hdPCIAddress parsed;

        g_assert_true(hdPCIAddressParseParts(domain, bus, slot, function, &parsed, NULL));
        g_assert_true(hdPCIAddressEqual(&parsed, a));
    }
}


static void
test_compare(void)
{
    hdPCIAddress sorted[] = {
        { 0, 0, 0, 0 }, { 0, 0, 0, 7 }, { 0, 0, 1, 0 }, { 0, 1, 0, 0 },
        { 1, 0, 0, 0 }, { 0xffffffff, 0, 0, 0 },
    };
    g_autoptr(GArray) arr = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    gsize i;

    for (i = G_N_ELEMENTS(sorted); i > 0; i--)
        g_array_append_val(arr, sorted[i - 1]);
    g_array_sort(arr, hdPCIAddressCompare);

    for (i = 0; i < G_N_ELEMENTS(sorted); i++) {
        g_assert_true(hdPCIAddressEqual(&g_array_index(arr, hdPCIAddress, i), &sorted[i]));
        g_assert_cmpint(hdPCIAddressCompare(&sorted[i], &sorted[i]), ==, 0);
    }
    g_assert_cmpint(hdPCIAddressCompare(&sorted[0], &sorted[1]), <, 0);
    g_assert_cmpint(hdPCIAddressCompare(&sorted[5], &sorted[4]), >, 0);
}


static void
test_host_path(void)
{
    static const struct {
        const char *root;
        const char *rel;
        const char *path;
    } cases[] = {
        { NULL, "sys/bus/pci", "/sys/bus/pci" },
        { "", "sys/bus/pci", "/sys/bus/pci" },
        { "/", "sys/bus/pci", "/sys/bus/pci" },
        { "/", "/sys/bus/pci", "/sys/bus/pci" },
        { "///", "sys", "/sys" },
        { "/tmp/sim", "sys/bus/pci", "/tmp/sim/sys/bus/pci" },
        { "/tmp/sim/", "/sys/bus/pci", "/tmp/sim/sys/bus/pci" },
        { "/tmp/sim//", "//dev/vfio/3", "/tmp/sim/dev/vfio/3" },
    };
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(hdHost) host = hdHostNew(cases[i].root);
        g_autofree char *path = hdHostPath(host, "%s", cases[i].rel);

        g_assert_cmpstr(path, ==, cases[i].path);
    }
}


static void
test_host_ref(void)
{
    hdHost *host = hdHostNew("/tmp/sim/");
    hdHost *ref = hdHostRef(host);
    g_autofree char *devpath = NULL;

    g_assert_true(ref == host);
    hdHostUnref(host);
    g_assert_cmpstr(hdHostRoot(ref), ==, "/tmp/sim");
    devpath = hdIOMMUGroupDevPath(ref, 12);
    g_assert_cmpstr(devpath, ==, "/tmp/sim/dev/vfio/12");
    hdHostUnref(ref);
    hdHostUnref(NULL);
}


int
main(int argc, char **argv)
{
    gsize i;

    g_test_init(&argc, &argv, NULL);

    for (i = 0; i < G_N_ELEMENTS(valid_addresses); i++) {
        g_autofree char *name = g_strdup_printf("/pciaddr/parse/valid/%zu-%s", i,
                                                valid_addresses[i].input);
        g_test_add_data_func(name, &valid_addresses[i], test_parse_valid);
    }
    for (i = 0; i < G_N_ELEMENTS(invalid_addresses); i++) {
        g_autofree char *name = g_strdup_printf("/pciaddr/parse/invalid/%zu", i);
        g_test_add_data_func(name, invalid_addresses[i], test_parse_invalid);
    }
    g_test_add_func("/pciaddr/parse/invalid-null-error", test_parse_invalid_null_error);
    g_test_add_func("/pciaddr/parse/long", test_parse_long);

    for (i = 0; i < G_N_ELEMENTS(valid_parts); i++) {
        g_autofree char *name = g_strdup_printf("/pciaddr/parts/valid/%zu", i);
        g_test_add_data_func(name, &valid_parts[i], test_parts_valid);
    }
    for (i = 0; i < G_N_ELEMENTS(invalid_parts); i++) {
        g_autofree char *name = g_strdup_printf("/pciaddr/parts/invalid/%zu", i);
        g_test_add_data_func(name, &invalid_parts[i], test_parts_invalid);
    }
    g_test_add_func("/pciaddr/parts/missing", test_parts_missing);
    g_test_add_func("/pciaddr/parts/roundtrip", test_parts_roundtrip);
    g_test_add_func("/pciaddr/compare", test_compare);
    g_test_add_func("/pciaddr/host/path", test_host_path);
    g_test_add_func("/pciaddr/host/ref", test_host_ref);

    return g_test_run();
}
