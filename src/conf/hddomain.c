/*
 * hddomain.c: parse libvirt's <domain> and <hostdev> XML
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "hdinternal.h"
#include "hdfile.h"
#include "hostdev/domain.h"


void
hdHostdevDefFree(hdHostdevDef *def)
{
    if (!def)
        return;
    g_free(def->alias);
    g_free(def->guest);
    if (def->net) {
        g_free(def->net->mac);
        g_free(def->net);
    }
    g_free(def);
}


void
hdDomainDefFree(hdDomainDef *def)
{
    if (!def)
        return;
    g_free(def->name);
    g_clear_pointer(&def->hostdevs, g_ptr_array_unref);
    g_clear_pointer(&def->notes, g_ptr_array_unref);
    g_free(def);
}


hdDomainDef *
hdDomainDefNew(void)
{
    hdDomainDef *def = g_new0(hdDomainDef, 1);

    def->hostdevs = g_ptr_array_new_with_free_func((GDestroyNotify)hdHostdevDefFree);
    def->notes = g_ptr_array_new_with_free_func(g_free);
    return def;
}


static gboolean
hdXMLNameIs(const xmlNode *node, const char *name)
{
    return node->type == XML_ELEMENT_NODE && strcmp((const char *)node->name, name) == 0;
}


static char *
hdXMLGetProp(const xmlNode *node, const char *name)
{
    xmlChar *value = xmlGetNoNsProp(node, (const xmlChar *)name);
    char *ret;

    if (!value)
        return NULL;
    ret = g_strdup((const char *)value);
    xmlFree(value);
    return ret;
}


static const xmlNode *
hdXMLFirstChild(const xmlNode *node, const char *name)
{
    const xmlNode *child;

    for (child = node->children; child; child = child->next) {
        if (hdXMLNameIs(child, name))
            return child;
    }
    return NULL;
}


static gboolean
hdHostdevParseManaged(const xmlNode *node, gboolean *managed, GError **error)
{
    g_autofree char *value = hdXMLGetProp(node, "managed");

    if (!value || strcmp(value, "no") == 0) {
        *managed = FALSE;
    } else if (strcmp(value, "yes") == 0) {
        *managed = TRUE;
    } else {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid value '%1$s' for attribute 'managed' of <hostdev> at line %2$ld: "
                     "expected 'yes' or 'no'"),
                   value, xmlGetLineNo(node));
        return FALSE;
    }
    return TRUE;
}


static gboolean
hdHostdevParseDriver(const xmlNode *node, GError **error)
{
    const xmlNode *driver = hdXMLFirstChild(node, "driver");
    g_autofree char *name = NULL;

    if (!driver)
        return TRUE;
    name = hdXMLGetProp(driver, "name");
    if (name && strcmp(name, "vfio") != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("unsupported <driver name='%1$s'/> in <hostdev> at line %2$ld: "
                     "hostdev assigns devices with 'vfio' only"),
                   name, xmlGetLineNo(driver));
        return FALSE;
    }
    return TRUE;
}


/* The PCI address in the attributes of @address.  libvirt treats a missing
 * domain as 0, and a missing function of a guest address too. */
static gboolean
hdXMLParsePCIAddress(const xmlNode *address, const char *default_function,
                     hdPCIAddress *addr, GError **error)
{
    g_autofree char *domain = hdXMLGetProp(address, "domain");
    g_autofree char *bus = hdXMLGetProp(address, "bus");
    g_autofree char *slot = hdXMLGetProp(address, "slot");
    g_autofree char *function = hdXMLGetProp(address, "function");

    return hdPCIAddressParseParts(domain ? domain : "0", bus, slot,
                                  function ? function : default_function, addr, error);
}


static gboolean
hdHostdevParseSourceAddress(const xmlNode *node, hdPCIAddress *addr, GError **error)
{
    const xmlNode *source = hdXMLFirstChild(node, "source");
    const xmlNode *address = source ? hdXMLFirstChild(source, "address") : NULL;
    g_autoptr(GError) local = NULL;

    if (!address) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("<hostdev> at line %1$ld has no <source><address .../></source>"),
                   xmlGetLineNo(node));
        return FALSE;
    }
    if (!hdXMLParsePCIAddress(address, NULL, addr, &local)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid source <address> of <hostdev> at line %1$ld: %2$s"),
                   xmlGetLineNo(address), local->message);
        return FALSE;
    }
    return TRUE;
}


/* The guest-side <address type='pci'/>, a direct child of <hostdev>;
 * other address types (ccw...) are not for PCI passthrough here. */
static gboolean
hdHostdevParseGuestAddress(const xmlNode *node, hdPCIAddress **guest, GError **error)
{
    const xmlNode *address = hdXMLFirstChild(node, "address");
    g_autofree char *type = address ? hdXMLGetProp(address, "type") : NULL;
    g_autoptr(GError) local = NULL;
    hdPCIAddress addr;

    if (!address)
        return TRUE;
    if (g_strcmp0(type, "pci") != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("unsupported guest <address type='%1$s'> at line %2$ld: expected "
                     "type='pci'"), type ? type : "", xmlGetLineNo(address));
        return FALSE;
    }
    if (!hdXMLParsePCIAddress(address, "0", &addr, &local)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid guest <address> of <hostdev> at line %1$ld: %2$s"),
                   xmlGetLineNo(address), local->message);
        return FALSE;
    }
    if (addr.domain != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid guest <address> of <hostdev> at line %1$ld: QEMU guests have "
                     "PCI domain 0 only"), xmlGetLineNo(address));
        return FALSE;
    }
    *guest = g_memdup2(&addr, sizeof(addr));
    return TRUE;
}


/* A name taken from the document (<name>, an alias) is text: a control
 * character would reach logs, replies and terminals. */
static gboolean
hdXMLCheckText(const xmlNode *node, const char *what, const char *value, GError **error)
{
    gunichar bad;

    if (hdStringIsText(value, -1, FALSE, &bad))
        return TRUE;
    if (bad == (gunichar)-1)
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("%1$s at line %2$ld is not valid UTF-8"),
                   what, xmlGetLineNo(node));
    else
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("%1$s at line %2$ld contains the control character U+%3$04X"),
                   what, xmlGetLineNo(node), (unsigned int)bad);
    return FALSE;
}


static void
hdDomainDefAddNote(hdDomainDef *def, const xmlNode *node, const char *what)
{
    g_ptr_array_add(def->notes,
                    g_strdup_printf(_("line %1$ld: %2$s"), xmlGetLineNo(node), what));
}


static void
hdHostdevNoteUnhandledChildren(hdDomainDef *def, const xmlNode *node, gboolean interface)
{
    static const char *const handled[] = { "driver", "source", "alias", "address", NULL };
    static const char *const handled_net[] = { "driver", "source", "alias", "address", "mac",
                                               "vlan", NULL };
    const xmlNode *child;

    for (child = node->children; child; child = child->next) {
        g_autofree char *what = NULL;

        if (child->type != XML_ELEMENT_NODE ||
            g_strv_contains(interface ? handled_net : handled, (const char *)child->name))
            continue;
        if (interface)
            what = g_strdup_printf(_("<%1$s> in <interface type='hostdev'> is not used by hostdev"),
                                   (const char *)child->name);
        else
            what = g_strdup_printf(_("<%1$s> in <hostdev> is not used by hostdev"),
                                   (const char *)child->name);
        hdDomainDefAddNote(def, child, what);
    }
}


/* <mac address='52:54:00:12:34:56'/>: six hex pairs separated by colons.
 * A multicast address cannot be a VF's own MAC. */
static gboolean
hdHostdevParseMac(const xmlNode *node, hdHostdevNet *net, GError **error)
{
    const xmlNode *mac = hdXMLFirstChild(node, "mac");
    g_autofree char *value = NULL;
    gboolean valid;
    gsize i;

    if (!mac)
        return TRUE;
    value = hdXMLGetProp(mac, "address");
    valid = value && strlen(value) == HD_MAC_STRLEN - 1;
    for (i = 0; valid && i < HD_MAC_STRLEN - 1; i++)
        valid = i % 3 == 2 ? value[i] == ':' : g_ascii_isxdigit(value[i]);
    /* The low bit of the first byte marks a multicast address. */
    if (valid)
        valid = (g_ascii_xdigit_value(value[1]) & 1) == 0;
    if (!valid) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid <mac address='%1$s'/> at line %2$ld: expected a unicast "
                     "address like 52:54:00:12:34:56"),
                   value ? value : "", xmlGetLineNo(mac));
        return FALSE;
    }
    net->mac = g_ascii_strdown(value, -1);
    return TRUE;
}


/* <vlan><tag id='42'/></vlan>: a VF gets one VLAN tag from its PF; a trunk
 * (several tags) or a native mode cannot be set that way. */
static gboolean
hdHostdevParseVlan(const xmlNode *node, hdHostdevNet *net, GError **error)
{
    const xmlNode *vlan = hdXMLFirstChild(node, "vlan");
    const xmlNode *child;
    g_autofree char *trunk = NULL;
    g_autofree char *id = NULL;
    g_autofree char *native = NULL;
    const xmlNode *tag = NULL;
    guint64 value;

    if (!vlan)
        return TRUE;
    trunk = hdXMLGetProp(vlan, "trunk");
    for (child = vlan->children; child; child = child->next) {
        if (!hdXMLNameIs(child, "tag"))
            continue;
        if (tag || (trunk && strcmp(trunk, "no") != 0)) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG,
                       _("<vlan> at line %1$ld: an SR-IOV VF takes exactly one VLAN tag"),
                       xmlGetLineNo(vlan));
            return FALSE;
        }
        tag = child;
    }
    if (tag) {
        id = hdXMLGetProp(tag, "id");
        native = hdXMLGetProp(tag, "nativeMode");
    }
    if (!tag || !id || native ||
        !g_ascii_string_to_unsigned(id, 10, 0, 4095, &value, NULL)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid <vlan> at line %1$ld: expected one <tag id='0..4095'/>, "
                     "without nativeMode"),
                   xmlGetLineNo(vlan));
        return FALSE;
    }
    net->vlan = (int)value;
    return TRUE;
}


/* A <hostdev>, or with @interface an <interface type='hostdev'> (the same
 * attributes and <source>, plus the VF's <mac> and <vlan>). */
static hdHostdevDef *
hdHostdevDefParseNode(hdDomainDef *def, const xmlNode *node, gboolean interface,
                      GError **error)
{
    g_autoptr(hdHostdevDef) hostdev = g_new0(hdHostdevDef, 1);
    g_autofree char *mode = hdXMLGetProp(node, "mode");
    const xmlNode *alias;

    if (mode && strcmp(mode, "subsystem") != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("unsupported <hostdev mode='%1$s'> at line %2$ld: "
                     "only mode='subsystem' can be assigned"),
                   mode, xmlGetLineNo(node));
        return NULL;
    }
    if (!hdHostdevParseManaged(node, &hostdev->managed, error) ||
        !hdHostdevParseDriver(node, error) ||
        !hdHostdevParseSourceAddress(node, &hostdev->addr, error) ||
        !hdHostdevParseGuestAddress(node, &hostdev->guest, error))
        return NULL;

    if (interface) {
        hostdev->net = g_new0(hdHostdevNet, 1);
        hostdev->net->vlan = -1;
        if (!hdHostdevParseMac(node, hostdev->net, error) ||
            !hdHostdevParseVlan(node, hostdev->net, error))
            return NULL;
    }

    if ((alias = hdXMLFirstChild(node, "alias")) &&
        (hostdev->alias = hdXMLGetProp(alias, "name")) &&
        !hdXMLCheckText(alias, "<alias name=.../>", hostdev->alias, error))
        return NULL;
    hdHostdevNoteUnhandledChildren(def, node, interface);
    return g_steal_pointer(&hostdev);
}


static gboolean
hdDomainDefAddHostdev(hdDomainDef *def, const xmlNode *node, gboolean interface,
                      GError **error)
{
    hdHostdevDef *hostdev = hdHostdevDefParseNode(def, node, interface, error);
    guint i;

    if (!hostdev)
        return FALSE;
    for (i = 0; i < def->hostdevs->len; i++) {
        hdHostdevDef *other = g_ptr_array_index(def->hostdevs, i);
        char buf[HD_PCI_ADDRESS_STRLEN];

        if (hdPCIAddressEqual(&other->addr, &hostdev->addr)) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG,
                       _("duplicate <hostdev> for PCI device %1$s at line %2$ld"),
                       hdPCIAddressFormat(&hostdev->addr, buf), xmlGetLineNo(node));
            hdHostdevDefFree(hostdev);
            return FALSE;
        }
    }
    g_ptr_array_add(def->hostdevs, hostdev);
    return TRUE;
}


/* libvirt requires the type of a subsystem <hostdev>; so do we. */
static gboolean
hdHostdevGetType(const xmlNode *node, char **type, GError **error)
{
    *type = hdXMLGetProp(node, "type");
    if (!*type) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("<hostdev> at line %1$ld has no 'type' attribute"), xmlGetLineNo(node));
        return FALSE;
    }
    return TRUE;
}


static gboolean
hdDomainDefParseDevices(hdDomainDef *def, const xmlNode *devices, GError **error)
{
    const xmlNode *child;

    for (child = devices->children; child; child = child->next) {
        g_autofree char *type = NULL;

        if (hdXMLNameIs(child, "interface")) {
            /* Only a VF passed through as a network device is ours. */
            type = hdXMLGetProp(child, "type");
            if (g_strcmp0(type, "hostdev") == 0 &&
                !hdDomainDefAddHostdev(def, child, TRUE, error))
                return FALSE;
            continue;
        }
        if (!hdXMLNameIs(child, "hostdev"))
            continue;
        if (!hdHostdevGetType(child, &type, error))
            return FALSE;
        if (strcmp(type, "pci") != 0) {
            g_autofree char *what =
                g_strdup_printf(_("<hostdev type='%1$s'> skipped: hostdev manages PCI devices only"),
                                type);
            hdDomainDefAddNote(def, child, what);
            continue;
        }
        if (!hdDomainDefAddHostdev(def, child, FALSE, error))
            return FALSE;
    }
    return TRUE;
}


static gboolean
hdDomainDefParseDomain(hdDomainDef *def, const xmlNode *root, GError **error)
{
    const xmlNode *name = hdXMLFirstChild(root, "name");
    const xmlNode *devices = hdXMLFirstChild(root, "devices");
    xmlChar *content;

    if (!name) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("<domain> has no <name>"));
        return FALSE;
    }
    content = xmlNodeGetContent(name);
    def->name = g_strstrip(g_strdup((const char *)content));
    xmlFree(content);
    if (!hdXMLCheckText(name, "<name>", def->name, error))
        return FALSE;
    if (!def->name[0] || strchr(def->name, '/')) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid domain <name> '%1$s' at line %2$ld"), def->name,
                   xmlGetLineNo(name));
        return FALSE;
    }
    if (devices && !hdDomainDefParseDevices(def, devices, error))
        return FALSE;
    return TRUE;
}


static gboolean
hdDomainDefParseLoneHostdev(hdDomainDef *def, const xmlNode *root, GError **error)
{
    g_autofree char *type = NULL;

    if (!hdHostdevGetType(root, &type, error))
        return FALSE;
    if (strcmp(type, "pci") != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("unsupported <hostdev type='%1$s'> at line %2$ld: "
                     "hostdev manages PCI devices only"),
                   type, xmlGetLineNo(root));
        return FALSE;
    }
    return hdDomainDefAddHostdev(def, root, FALSE, error);
}


/* A lone <interface type='hostdev'>, as `virsh attach-device` takes it. */
static gboolean
hdDomainDefParseLoneInterface(hdDomainDef *def, const xmlNode *root, GError **error)
{
    g_autofree char *type = hdXMLGetProp(root, "type");

    if (g_strcmp0(type, "hostdev") != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("unsupported <interface type='%1$s'> at line %2$ld: hostdev assigns "
                     "only <interface type='hostdev'>"),
                   type ? type : "", xmlGetLineNo(root));
        return FALSE;
    }
    return hdDomainDefAddHostdev(def, root, TRUE, error);
}


static hdDomainDef *
hdDomainDefParseDoc(xmlDoc *doc, GError **error)
{
    g_autoptr(hdDomainDef) def = hdDomainDefNew();
    const xmlNode *root = xmlDocGetRootElement(doc);

    if (!root) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("XML document has no root element"));
        return NULL;
    }
    if (hdXMLNameIs(root, "domain")) {
        if (!hdDomainDefParseDomain(def, root, error))
            return NULL;
    } else if (hdXMLNameIs(root, "hostdev")) {
        if (!hdDomainDefParseLoneHostdev(def, root, error))
            return NULL;
    } else if (hdXMLNameIs(root, "interface")) {
        if (!hdDomainDefParseLoneInterface(def, root, error))
            return NULL;
    } else {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("unexpected root element <%1$s>: expected <domain>, <hostdev> or "
                     "<interface type='hostdev'>"),
                   (const char *)root->name);
        return NULL;
    }
    return g_steal_pointer(&def);
}


/* An entity declaration in the document: parsing stops there.  Entities
 * let a small document expand to gigabytes (a 115 KB <name> that uses one
 * 100 KB entity 5,000 times: 500 MB, and seconds of work), and libvirt's
 * domain XML never declares any.  Refused outright rather than bounded:
 * there is no expansion left to bound. */
static void
hdXMLEntityDecl(void *opaque, const xmlChar *name, int type, const xmlChar *public_id,
                const xmlChar *system_id, xmlChar *content)
{
    xmlParserCtxt *ctxt = opaque;
    int *line = ctxt->_private;

    if (*line == 0)
        *line = MAX(xmlSAX2GetLineNumber(ctxt), 1);
    xmlStopParser(ctxt);
}


/* @xml in the encoding it declares (a file's bytes), or with @utf8 UTF-8
 * text whatever it declares (a string: the encoding a file had is gone). */
static hdDomainDef *
hdDomainDefParseData(const char *xml, gsize len, gboolean utf8, GError **error)
{
    xmlParserCtxt *ctxt = NULL;
    xmlDoc *doc = NULL;
    hdDomainDef *def = NULL;
    int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
    int entity_line = 0;

    if (len > HD_XML_MAX_SIZE) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("XML document of %1$" G_GSIZE_FORMAT " bytes exceeds the limit of %2$d bytes"),
                   len, HD_XML_MAX_SIZE);
        return NULL;
    }
    if (!(ctxt = xmlNewParserCtxt())) {
        hdErrorSet(error, HD_ERROR_INTERNAL, _("cannot allocate an XML parser"));
        return NULL;
    }
    if (utf8)
        options |= XML_PARSE_IGNORE_ENC;
    ctxt->_private = &entity_line;
    ctxt->sax->entityDecl = hdXMLEntityDecl;
    /* No network, no external entities, no DTD loading: the document comes
     * from a client and must not make us read anything else; no entity
     * declaration either (hdXMLEntityDecl). */
    doc = xmlCtxtReadMemory(ctxt, xml, (int)len, "domain.xml", utf8 ? "UTF-8" : NULL, options);
    if (entity_line > 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("XML entity declaration at line %1$d: entities are not accepted"),
                   entity_line);
        goto cleanup;
    }
    if (!doc) {
        const xmlError *xerr = xmlCtxtGetLastError(ctxt);
        g_autofree char *reason = g_strdup(xerr && xerr->message ? xerr->message : "");

        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("malformed XML at line %1$d: %2$s"),
                   xerr ? xerr->line : 0, g_strchomp(reason));
        goto cleanup;
    }
    def = hdDomainDefParseDoc(doc, error);

 cleanup:
    xmlFreeDoc(doc);
    xmlFreeParserCtxt(ctxt);
    return def;
}


hdDomainDef *
hdDomainDefParseString(const char *xml, gsize len, GError **error)
{
    return hdDomainDefParseData(xml, len, TRUE, error);
}


hdDomainDef *
hdDomainDefParseFile(const char *path, GError **error)
{
    g_autofree char *contents = NULL;
    gsize len = 0;
    g_autoptr(GError) local = NULL;

    if (!hdFileReadRegular(path, HD_XML_MAX_SIZE, &contents, &len, &local)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("cannot read XML file '%1$s': %2$s"),
                   path, local->message);
        return NULL;
    }
    return hdDomainDefParseData(contents, len, FALSE, error);
}
