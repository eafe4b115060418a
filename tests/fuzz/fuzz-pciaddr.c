/*
 * fuzz-pciaddr.c: the PCI address parsers
 *
 * The input is tried whole as "DDDD:BB:SS.F" (hdPCIAddressParse), and,
 * split at newlines, as libvirt's four XML attributes
 * (hdPCIAddressParseParts; a missing part is NULL).  Whatever is accepted
 * must be in range and format to a string that parses back to the same
 * address.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "fuzz.h"
#include "hostdev/pci.h"


static void
fuzzCheckAddress(const hdPCIAddress *addr, const char *input)
{
    char buf[HD_PCI_ADDRESS_STRLEN];
    hdPCIAddress again;
    g_autoptr(GError) error = NULL;

    if (addr->bus > 0xff || addr->slot > 0x1f || addr->function > 7)
        g_error("'%s' parsed to an address out of range", input);
    hdPCIAddressFormat(addr, buf);
    if (!hdPCIAddressParse(buf, &again, &error))
        g_error("'%s' formats to '%s', which does not parse: %s", input, buf, error->message);
    if (!hdPCIAddressEqual(addr, &again))
        g_error("'%s' does not survive formatting and parsing ('%s')", input, buf);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzzQuietLogs();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *str = g_strndup((const char *)data, size);
    g_auto(GStrv) parts = NULL;
    hdPCIAddress addr;

    if (hdPCIAddressParse(str, &addr, NULL))
        fuzzCheckAddress(&addr, str);

    parts = g_strsplit(str, "\n", 4);
    if (g_strv_length(parts) >= 2) {
        guint n = g_strv_length(parts);
        /* An empty first or last part stands for an absent attribute. */
        const char *domain = *parts[0] ? parts[0] : NULL;
        const char *function = n > 3 && *parts[3] ? parts[3] : NULL;

        if (hdPCIAddressParseParts(domain, parts[1], n > 2 ? parts[2] : NULL, function,
                                   &addr, NULL))
            fuzzCheckAddress(&addr, str);
    }
    return 0;
}
