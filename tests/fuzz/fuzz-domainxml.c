/*
 * fuzz-domainxml.c: libvirt <domain> and <hostdev> XML
 *
 * Whatever the parser accepts must hold only valid addresses, VLANs and
 * canonical MACs, and a rejection must come with a message.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "fuzz.h"
#include "hostdev/domain.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzzQuietLogs();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseString((const char *)data, size, &error);
    guint i;

    if (!def) {
        if (!error || !error->message || !*error->message)
            g_error("the XML parser failed without a message");
        return 0;
    }
    g_assert_no_error(error);
    g_assert_nonnull(def->hostdevs);
    for (i = 0; i < def->hostdevs->len; i++) {
        hdHostdevDef *hostdev = g_ptr_array_index(def->hostdevs, i);
        g_autofree char *addr = hdPCIAddressToString(&hostdev->addr);
        hdPCIAddress again;

        if (!hdPCIAddressParse(addr, &again, NULL) || !hdPCIAddressEqual(&again, &hostdev->addr))
            g_error("the XML parser accepted an invalid address %s", addr);
        if (hostdev->net) {
            const char *mac = hostdev->net->mac;

            if (hostdev->net->vlan < -1 || hostdev->net->vlan > 4095)
                g_error("the XML parser accepted VLAN %d", hostdev->net->vlan);
            if (mac && (strlen(mac) != HD_MAC_STRLEN - 1 ||
                        strspn(mac, "0123456789abcdef:") != HD_MAC_STRLEN - 1))
                g_error("the XML parser accepted MAC '%s'", mac);
        }
    }
    return 0;
}
