/*
 * vfnet-tool.c: the VF settings backend from the command line, for the VM
 * tier (netdevsim VFs on a real kernel)
 *
 *   vfnet-tool get PF VF            prints "MAC VLAN"
 *   vfnet-tool set PF VF MAC VLAN
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <stdio.h>
#include <string.h>

#include "hdvfnet.h"

int
main(int argc, char **argv)
{
    g_autoptr(GError) error = NULL;
    hdVFNetConfig config = { .vlan = 0 };
    guint64 index;
    gint64 vlan;

    if (argc < 4 || !g_ascii_string_to_unsigned(argv[3], 10, 0, G_MAXUINT, &index, NULL)) {
        g_printerr("usage: vfnet-tool get PF VF | set PF VF MAC VLAN\n");
        return 2;
    }
    if (strcmp(argv[1], "get") == 0 && argc == 4) {
        if (!hdVFNetGetNetlink(argv[2], (unsigned int)index, &config, NULL, &error)) {
            g_printerr("vfnet-tool: %s\n", error->message);
            return 1;
        }
        printf("%s %d\n", config.mac, config.vlan);
        return 0;
    }
    if (strcmp(argv[1], "set") == 0 && argc == 6 &&
        g_ascii_string_to_signed(argv[5], 10, 0, 4095, &vlan, NULL)) {
        g_strlcpy(config.mac, argv[4], sizeof(config.mac));
        config.vlan = (int)vlan;
        if (!hdVFNetSetNetlink(argv[2], (unsigned int)index, &config, NULL, &error)) {
            g_printerr("vfnet-tool: %s\n", error->message);
            return 1;
        }
        return 0;
    }
    g_printerr("usage: vfnet-tool get PF VF | set PF VF MAC VLAN\n");
    return 2;
}
