/*
 * domain.h: the parts of libvirt's domain XML that hostdev reads
 *
 * A whole <domain> (its <name>, every PCI <hostdev> and every
 * <interface type='hostdev'> in <devices>), or a single <hostdev> or
 * <interface type='hostdev'>, as users write them, as `virsh dumpxml`
 * prints them and as `virsh attach-device` takes them.
 * Elements hostdev does not handle are skipped with a note; wrong input is
 * an error naming the element and the value.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#include "hostdev/pci.h"

G_BEGIN_DECLS

/* Upper bound on accepted XML documents. */
#define HD_XML_MAX_SIZE (4 * 1024 * 1024)

/* The network side of an SR-IOV VF assigned as <interface type='hostdev'>:
 * what its PF sets for it while the guest has it. */
typedef struct {
    char *mac;          /* <mac address=.../>, canonical lower case; NULL if absent */
    int vlan;           /* <vlan><tag id=.../></vlan>, 0..4095; -1 if absent */
} hdHostdevNet;

#define HD_MAC_STRLEN 18    /* "52:54:00:12:34:56" plus NUL */

typedef struct {
    hdPCIAddress addr;
    gboolean managed;   /* managed='yes': hostdev moves it to vfio-pci and back */
    char *alias;        /* <alias name=.../>, NULL if absent */
    /* Where the guest sees it: <address type='pci' .../> beside <source>,
     * NULL if absent.  Bus N is the PCI controller of index N, which
     * libvirt names "pci.N" in QEMU (bus 0 is the root bus). */
    hdPCIAddress *guest;
    hdHostdevNet *net;  /* <interface type='hostdev'>, NULL for a <hostdev> */
} hdHostdevDef;

void hdHostdevDefFree(hdHostdevDef *def);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdHostdevDef, hdHostdevDefFree)

typedef struct {
    char *name;           /* domain <name>, NULL for a lone device */
    GPtrArray *hostdevs;  /* hdHostdevDef *, owned, in document order */
    GPtrArray *notes;     /* char *: what was skipped and why */
} hdDomainDef;

/* An empty definition, for a caller that fills it itself. */
hdDomainDef *hdDomainDefNew(void);
void hdDomainDefFree(hdDomainDef *def);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdDomainDef, hdDomainDefFree)

/* @xml is UTF-8 text (as a JSON string is), whatever encoding its XML
 * declaration names: a file's encoding is gone once it is text. */
hdDomainDef *hdDomainDefParseString(const char *xml, gsize len, GError **error);
/* The regular file @path (at most HD_XML_MAX_SIZE bytes; a FIFO or a device
 * is refused before it is read), in the encoding it declares. */
hdDomainDef *hdDomainDefParseFile(const char *path, GError **error);

G_END_DECLS
