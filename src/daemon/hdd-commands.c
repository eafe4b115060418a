/*
 * hdd-commands.c: hostdevd's commands (docs/protocol.rst)
 *
 * Every command checks its arguments on the main thread first (a bad
 * request changes nothing).  Queries and domain definitions answer at once;
 * everything that touches the host runs on a worker (an hddOp) and is
 * answered when done, with the manager's events and destroy progress sent
 * meanwhile.  A domain runs one long operation at a time (hddDomain.busy).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>
#ifdef __GLIBC__
# include <malloc.h>
#endif

#include <gio/gio.h>

#include "hostdev/destroy.h"
#include "hostdev/domain.h"
#include "hostdev/error.h"
#include "hostdev/hotplug.h"
#include "hostdev/qemu.h"
#include "hdd.h"
#include "hdinternal.h"
#include "hdholders.h"
#include "hdprocess.h"

#define HDD_DOMAINS_FILE "hostdevd-domains.json"
#define HDD_QMP_TIMEOUT_MS 10000

typedef struct _hddOp hddOp;
typedef JsonNode *(*hddWorkFunc)(hddOp *op, GError **error);

/* One command on a worker.  Everything it needs is copied in on the main
 * thread: workers never touch the domain table. */
struct _hddOp {
    hddDaemon *dmn;
    hddClient *client;
    JsonNode *id;
    hddWorkFunc func;
    char *domain;             /* the domain it keeps busy; NULL: none */
    char *qmp;
    pid_t pid;
    guint64 pid_start;
    uid_t pid_uid;
    hdPCIAddress addr;
    hdDomainDef *def;
    gboolean whole_group;
    /* prepare, attach-device, detach-device: the XML, parsed on the worker
     * into def (hddOpParseXML), with the domain's aliases as they were. */
    const char *command;
    char *xml;
    GHashTable *aliases;      /* "0000:11:00.0" -> "hostdev0"; NULL for prepare */
    gboolean invent_aliases;
    hddMonitor *monitor;      /* the domain's; kept while the domain is busy */
    guint unplug_timeout_ms;  /* detach: 0, the scaled default */
    GHashTable *pending;      /* detach: the domain's unplug_pending, as it was */
    GStrv requested;          /* detach: aliases whose unplug was requested before */
    GArray *unplug_pending;   /* detach: hdPCIAddress still in the guest at the deadline */
};

static gboolean hddOpParseXML(hddOp *op, GError **error);


static void
hddOpFree(hddOp *op)
{
    hddClientUnref(op->client);
    if (op->id)
        json_node_unref(op->id);
    g_free(op->domain);
    g_free(op->qmp);
    if (op->def)
        hdDomainDefFree(op->def);
    g_free(op->xml);
    if (op->aliases)
        g_hash_table_unref(op->aliases);
    if (op->pending)
        g_hash_table_unref(op->pending);
    g_strfreev(op->requested);
    if (op->unplug_pending)
        g_array_unref(op->unplug_pending);
    g_free(op);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hddOp, hddOpFree)


void
hddDomainFree(hddDomain *dom)
{
    if (!dom)
        return;
    g_free(dom->name);
    g_free(dom->qmp);
    g_free(dom->cgroup);
    g_free(dom->seclabel);
    g_hash_table_unref(dom->aliases);
    g_hash_table_unref(dom->unplug_pending);
    hddMonitorFree(dom->monitor);
    g_free(dom);
}


static hddDomain *
hddDomainNew(const char *name)
{
    hddDomain *dom = g_new0(hddDomain, 1);

    dom->name = g_strdup(name);
    dom->aliases = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    dom->unplug_pending = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    return dom;
}


static gint
hddCompareStrings(gconstpointer a, gconstpointer b, gpointer opaque)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}


/* The members that define a domain, as the durable file and the
 * query-domains reply both carry them. */
static void
hddBuildDomainDefinition(JsonBuilder *b, const hddDomain *dom)
{
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, dom->name);
    json_builder_set_member_name(b, "qmp");
    json_builder_add_string_value(b, dom->qmp);
    json_builder_set_member_name(b, "pid");
    json_builder_add_int_value(b, dom->pid);
    json_builder_set_member_name(b, "pid-start");
    json_builder_add_int_value(b, (gint64)dom->pid_start);
    json_builder_set_member_name(b, "owner-uid");
    json_builder_add_int_value(b, dom->owner);
    json_builder_set_member_name(b, "pid-uid");
    json_builder_add_int_value(b, dom->pid_uid);
    json_builder_set_member_name(b, "cgroup");
    json_builder_add_string_value(b, dom->cgroup);
    json_builder_set_member_name(b, "seclabel");
    json_builder_add_string_value(b, dom->seclabel);
    json_builder_set_member_name(b, "unplug-pending");
    json_builder_begin_array(b);
    {
        g_autofree const char **addrs = (const char **)
            g_hash_table_get_keys_as_array(dom->unplug_pending, NULL);
        guint i;

        g_qsort_with_data(addrs, g_hash_table_size(dom->unplug_pending), sizeof(char *),
                          (GCompareDataFunc)hddCompareStrings, NULL);
        for (i = 0; addrs[i]; i++)
            json_builder_add_string_value(b, addrs[i]);
    }
    json_builder_end_array(b);
}


/* Domain definitions: a JSON file in the state directory, replaced
 * atomically, so that a restarted daemon still knows each guest's QEMU. */
static void
hddDomainsSave(hddDaemon *dmn)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *path = g_build_filename(dmn->config->state_dir, HDD_DOMAINS_FILE, NULL);
    g_autofree char *text = NULL;
    g_autoptr(GList) names = g_hash_table_get_keys(dmn->domains);
    GList *l;

    names = g_list_sort(names, (GCompareFunc)strcmp);
    json_builder_begin_array(b);
    for (l = names; l; l = l->next) {
        hddDomain *dom = g_hash_table_lookup(dmn->domains, l->data);
        GHashTableIter iter;
        gpointer key, value;

        json_builder_begin_object(b);
        hddBuildDomainDefinition(b, dom);
        json_builder_set_member_name(b, "aliases");
        json_builder_begin_object(b);
        g_hash_table_iter_init(&iter, dom->aliases);
        while (g_hash_table_iter_next(&iter, &key, &value)) {
            json_builder_set_member_name(b, key);
            json_builder_add_string_value(b, value);
        }
        json_builder_end_object(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    /* The generator keeps a copy of the root. */
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    text = json_generator_to_data(gen, NULL);
    if (!g_file_set_contents(path, text, -1, &error))
        g_warning(_("cannot save the domain definitions: %1$s"), error->message);
}


static const char *
hddObjString(JsonObject *obj, const char *name)
{
    JsonNode *node = json_object_get_member(obj, name);

    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
        return NULL;
    return json_node_get_string(node);
}


static gboolean hddDomainStartMonitor(hddDaemon *dmn, hddDomain *dom, GError **error);
static void hddDomainStartMonitorOrWarn(hddDaemon *dmn, hddDomain *dom);


/* Whether @addr is still active in @dom: a pending unplug of a device that
 * left the domain while no daemon ran (a destroy it was killed in, the
 * manager's tools) is over. */
static gboolean
hddStillAssigned(hddDaemon *dmn, hddDomain *dom, const hdPCIAddress *addr)
{
    g_autoptr(hdDeviceInfo) info = hdManagerGetDevice(dmn->mgr, addr, NULL);

    return info && info->state == HD_DEVICE_ACTIVE && g_strcmp0(info->domain, dom->name) == 0;
}


/* A domain's name, given to define-domain or read back from the file. */
#define HDD_MAX_NAME_BYTES 256

static gboolean
hddCheckDomainName(const char *name, GError **error)
{
    gunichar bad;

    if (strchr(name, '/') || !hdStringIsText(name, -1, FALSE, &bad)) {
        /* Escaped: printed as it is, a control character would reach the
         * terminal that shows the message. */
        g_autofree char *escaped = g_strescape(name, NULL);

        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid domain name \"%1$s\": it must be UTF-8 text without '/' or "
                     "control characters"), escaped);
        return FALSE;
    }
    if (!*name || strlen(name) > HDD_MAX_NAME_BYTES) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid domain name '%1$s': it must have 1 to %2$u bytes"), name,
                   (unsigned int)HDD_MAX_NAME_BYTES);
        return FALSE;
    }
    return TRUE;
}


/* What hddDomainsSave writes for a domain, member by member: 's' a string
 * or null, 'i' an integer from 0 to G_MAXUINT32 (a pid, a uid), 'n' a
 * non-negative integer (a process's start time, in clock ticks since boot),
 * 'o' an object of strings, 'a' an array of strings. */
static const struct {
    const char *name;
    char type;
} hddSavedMembers[] = {
    { "name", 's' }, { "qmp", 's' }, { "pid", 'i' }, { "pid-start", 'n' },
    { "owner-uid", 'i' }, { "pid-uid", 'i' }, { "cgroup", 's' }, { "seclabel", 's' },
    { "unplug-pending", 'a' }, { "aliases", 'o' },
};


static gboolean
hddSavedStrings(JsonNode *node, char type)
{
    g_autoptr(GList) values = NULL;
    GList *l;

    if (type == 'o' && JSON_NODE_HOLDS_OBJECT(node))
        values = json_object_get_values(json_node_get_object(node));
    else if (type == 'a' && JSON_NODE_HOLDS_ARRAY(node))
        values = json_array_get_elements(json_node_get_array(node));
    else
        return FALSE;
    for (l = values; l; l = l->next) {
        if (!JSON_NODE_HOLDS_VALUE(l->data) ||
            json_node_get_value_type(l->data) != G_TYPE_STRING)
            return FALSE;
    }
    return TRUE;
}


/* Entry @index of the domains file: every member hostdevd reads is of its
 * type, and the name is one define-domain accepts.  A member missing (a
 * file of an older hostdevd) is left at its default. */
static gboolean
hddCheckSavedDomain(JsonNode *node, GError **error)
{
    JsonObject *obj = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
    const char *name = obj ? hddObjString(obj, "name") : NULL;
    g_autoptr(GError) local = NULL;
    guint i;

    if (!obj || !name) {
        hdErrorSet(error, HD_ERROR_STATE, "%s", _("not an object with a 'name'"));
        return FALSE;
    }
    if (!hddCheckDomainName(name, &local)) {
        hdErrorSet(error, HD_ERROR_STATE, "%s", local->message);
        return FALSE;
    }
    for (i = 0; i < G_N_ELEMENTS(hddSavedMembers); i++) {
        JsonNode *member = json_object_get_member(obj, hddSavedMembers[i].name);
        char type = hddSavedMembers[i].type;
        gboolean ok;

        if (!member)
            continue;
        if (type == 's')
            ok = JSON_NODE_HOLDS_NULL(member) ||
                 (JSON_NODE_HOLDS_VALUE(member) &&
                  json_node_get_value_type(member) == G_TYPE_STRING);
        else if (type == 'i' || type == 'n')
            ok = JSON_NODE_HOLDS_VALUE(member) &&
                 json_node_get_value_type(member) == G_TYPE_INT64 &&
                 json_node_get_int(member) >= 0 &&
                 (type == 'n' || json_node_get_int(member) <= G_MAXUINT32);
        else
            ok = hddSavedStrings(member, type);
        if (!ok) {
            hdErrorSet(error, HD_ERROR_STATE, _("domain '%1$s': member '%2$s' must be %3$s"),
                       name, hddSavedMembers[i].name,
                       type == 's' ? _("a string or null") :
                       type == 'i' ? _("an integer from 0 to 4294967295") :
                       type == 'n' ? _("a non-negative integer") :
                       type == 'o' ? _("an object of strings") : _("an array of strings"));
            return FALSE;
        }
    }
    return TRUE;
}


/* The domains file, checked whole before anything is taken from it: a
 * domain skipped would be lost at the next save, with the QEMU it names;
 * hostdevd does not start on a file it cannot read, as on a bad state
 * file, and says where the file is wrong. */
static gboolean
hddDomainsCheck(JsonParser *parser, const char *path, GError **error)
{
    JsonNode *root = json_parser_get_root(parser);
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    JsonArray *arr;
    guint i;

    if (!root || !JSON_NODE_HOLDS_ARRAY(root)) {
        hdErrorSet(error, HD_ERROR_STATE, _("domain definitions '%1$s' are not a JSON array"),
                   path);
        return FALSE;
    }
    arr = json_node_get_array(root);
    for (i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *node = json_array_get_element(arr, i);
        g_autoptr(GError) local = NULL;

        if (!hddCheckSavedDomain(node, &local)) {
            hdErrorSet(error, HD_ERROR_STATE,
                       _("domain definitions '%1$s', entry %2$u: %3$s"), path, i + 1,
                       local->message);
            return FALSE;
        }
        if (!g_hash_table_add(names, (gpointer)hddObjString(json_node_get_object(node),
                                                            "name"))) {
            hdErrorSet(error, HD_ERROR_STATE,
                       _("domain definitions '%1$s', entry %2$u: domain '%3$s' is defined "
                         "twice"), path, i + 1,
                       hddObjString(json_node_get_object(node), "name"));
            return FALSE;
        }
    }
    return TRUE;
}


gboolean
hddDomainsLoad(hddDaemon *dmn, GError **error)
{
    g_autofree char *path = g_build_filename(dmn->config->state_dir, HDD_DOMAINS_FILE, NULL);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    g_autofree char *text = NULL;
    gsize len;
    JsonArray *arr;
    guint i;

    if (!g_file_test(path, G_FILE_TEST_EXISTS))
        return TRUE;
    if (!g_file_get_contents(path, &text, &len, error))
        return FALSE;
    if (!json_parser_load_from_data(parser, text, len, &local)) {
        hdErrorSet(error, HD_ERROR_STATE, _("domain definitions '%1$s' are malformed: %2$s"),
                   path, local->message);
        return FALSE;
    }
    if (!hddDomainsCheck(parser, path, error))
        return FALSE;
    arr = json_node_get_array(json_parser_get_root(parser));
    for (i = 0; i < json_array_get_length(arr); i++) {
        JsonObject *obj = json_array_get_object_element(arr, i);
        const char *name = hddObjString(obj, "name");
        JsonObject *aliases;
        g_autoptr(GError) err = NULL;
        hddDomain *dom;

        dom = hddDomainNew(name);
        dom->qmp = g_strdup(hddObjString(obj, "qmp"));
        dom->pid = json_object_get_int_member_with_default(obj, "pid", 0);
        dom->pid_start = json_object_get_int_member_with_default(obj, "pid-start", 0);
        /* Written by root before owners were recorded: root's. */
        dom->owner = (uid_t)CLAMP(json_object_get_int_member_with_default(obj, "owner-uid", 0),
                                  0, G_MAXUINT32);
        dom->pid_uid = (uid_t)CLAMP(json_object_get_int_member_with_default(obj, "pid-uid", 0),
                                    0, G_MAXUINT32);
        dom->cgroup = g_strdup(hddObjString(obj, "cgroup"));
        dom->seclabel = g_strdup(hddObjString(obj, "seclabel"));
        if (json_object_has_member(obj, "aliases") &&
            (aliases = json_object_get_object_member(obj, "aliases"))) {
            g_autoptr(GList) members = json_object_get_members(aliases);
            GList *l;

            for (l = members; l; l = l->next) {
                const char *alias = hddObjString(aliases, l->data);
                hdPCIAddress addr;

                if (alias && hdPCIAddressParse(l->data, &addr, NULL) &&
                    hddStillAssigned(dmn, dom, &addr))
                    g_hash_table_insert(dom->aliases, hdPCIAddressToString(&addr),
                                        g_strdup(alias));
            }
        }
        if (json_object_has_member(obj, "unplug-pending") &&
            JSON_NODE_HOLDS_ARRAY(json_object_get_member(obj, "unplug-pending"))) {
            JsonArray *pending = json_object_get_array_member(obj, "unplug-pending");
            guint j;

            for (j = 0; j < json_array_get_length(pending); j++) {
                JsonNode *node = json_array_get_element(pending, j);
                hdPCIAddress addr;

                if (JSON_NODE_HOLDS_VALUE(node) &&
                    json_node_get_value_type(node) == G_TYPE_STRING &&
                    hdPCIAddressParse(json_node_get_string(node), &addr, NULL) &&
                    hddStillAssigned(dmn, dom, &addr))
                    g_hash_table_add(dom->unplug_pending, hdPCIAddressToString(&addr));
            }
        }
        if (!hdSecurityManagerSetDomain(dmn->sec, dom->name, dom->seclabel, dom->cgroup, &err))
            g_warning(_("domain %1$s: %2$s"), dom->name, err->message);
        g_hash_table_insert(dmn->domains, dom->name, dom);
        /* Its QEMU runs, or a device it was asked to unplug may have left
         * while no daemon listened: the monitor connects and says so. */
        if (dom->pid > 0 || g_hash_table_size(dom->unplug_pending) > 0)
            hddDomainStartMonitorOrWarn(dmn, dom);
    }
    return TRUE;
}


/* Argument checking: every member must be known and of its type. */
typedef struct {
    const char *name;
    char type;                /* 's' string, 'i' integer, 'b' boolean */
    gboolean required;
} hddArg;


static gboolean
hddCheckArgs(JsonObject *args, const hddArg *spec, GError **error)
{
    g_autoptr(GList) members = args ? json_object_get_members(args) : NULL;
    const hddArg *a;
    GList *l;

    for (l = members; l; l = l->next) {
        const char *name = l->data;
        JsonNode *val = json_object_get_member(args, name);
        GType type;

        for (a = spec; a->name && strcmp(a->name, name) != 0; a++)
            ;
        if (!a->name) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG, _("unexpected argument '%1$s'"), name);
            return FALSE;
        }
        type = JSON_NODE_HOLDS_VALUE(val) ? json_node_get_value_type(val) : G_TYPE_INVALID;
        if ((a->type == 's' && type != G_TYPE_STRING) ||
            (a->type == 'i' && type != G_TYPE_INT64) ||
            (a->type == 'b' && type != G_TYPE_BOOLEAN)) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG, _("argument '%1$s' must be a %2$s"), name,
                       a->type == 's' ? "string" : a->type == 'i' ? "integer" : "boolean");
            return FALSE;
        }
    }
    for (a = spec; a->name; a++) {
        if (a->required && (!args || !json_object_has_member(args, a->name))) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG, _("missing argument '%1$s'"), a->name);
            return FALSE;
        }
    }
    return TRUE;
}


static const char *
hddArgString(JsonObject *args, const char *name)
{
    return args ? hddObjString(args, name) : NULL;
}


static hddDomain *
hddLookupDomain(hddDaemon *dmn, const char *name, GError **error)
{
    hddDomain *dom = g_hash_table_lookup(dmn->domains, name);

    if (!dom)
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("no domain named '%1$s'"), name);
    return dom;
}


/* Only root and the client that defined a domain may change or use it. */
static gboolean
hddMayUseDomain(const hddDomain *dom, uid_t uid, GError **error)
{
    if (uid == 0 || uid == dom->owner)
        return TRUE;
    hdErrorSet(error, HD_ERROR_PERMISSION,
               _("domain '%1$s' belongs to uid %2$u: uid %3$u may not change or use it"),
               dom->name, (unsigned int)dom->owner, (unsigned int)uid);
    return FALSE;
}


static void
hddAddDevice(JsonBuilder *b, const hdDeviceInfo *info)
{
    char addr[HD_PCI_ADDRESS_STRLEN];

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "address");
    json_builder_add_string_value(b, hdPCIAddressFormat(&info->addr, addr));
    json_builder_set_member_name(b, "group");
    json_builder_add_int_value(b, info->group);
    json_builder_set_member_name(b, "state");
    json_builder_add_string_value(b, hdDeviceStateToString(info->state));
    json_builder_set_member_name(b, "driver");
    json_builder_add_string_value(b, info->driver);
    json_builder_set_member_name(b, "original-driver");
    json_builder_add_string_value(b, info->original_driver);
    json_builder_set_member_name(b, "domain");
    json_builder_add_string_value(b, info->domain);
    json_builder_set_member_name(b, "managed");
    json_builder_add_boolean_value(b, info->managed);
    json_builder_end_object(b);
}


static gint
hddCompareInfo(gconstpointer a, gconstpointer b)
{
    const hdDeviceInfo *x = *(hdDeviceInfo *const *)a;
    const hdDeviceInfo *y = *(hdDeviceInfo *const *)b;

    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return hdPCIAddressCompare(&x->addr, &y->addr);
}


/* query-devices: every PCI device of the host, by IOMMU group. */
static JsonNode *
hddQueryDevices(hddDaemon *dmn, GError **error)
{
    hdHost *host = hdManagerGetHost(dmn->mgr);
    g_autofree char *dir_path = hdHostPath(host, "sys/bus/pci/devices");
    g_autoptr(GDir) dir = NULL;
    g_autoptr(GPtrArray) infos = g_ptr_array_new_with_free_func((GDestroyNotify)hdDeviceInfoFree);
    g_autoptr(GArray) pending = hdManagerPendingGroups(dmn->mgr);
    g_autoptr(JsonBuilder) b = json_builder_new();
    const char *name;
    guint i;

    if (!(dir = g_dir_open(dir_path, 0, error)))
        return NULL;
    while ((name = g_dir_read_name(dir))) {
        hdPCIAddress addr;
        hdDeviceInfo *info;

        if (!hdPCIAddressParse(name, &addr, NULL))
            continue;
        /* A device that vanished since readdir is simply not listed. */
        if ((info = hdManagerGetDevice(dmn->mgr, &addr, NULL)))
            g_ptr_array_add(infos, info);
    }
    g_ptr_array_sort(infos, hddCompareInfo);

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "groups");
    json_builder_begin_array(b);
    for (i = 0; i < infos->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(infos, i);
        gboolean is_pending = FALSE;
        guint j;

        if (i == 0 || ((hdDeviceInfo *)g_ptr_array_index(infos, i - 1))->group != info->group) {
            if (i > 0) {
                json_builder_end_array(b);
                json_builder_end_object(b);
            }
            for (j = 0; pending && j < pending->len; j++)
                is_pending |= g_array_index(pending, guint, j) == info->group;
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "group");
            json_builder_add_int_value(b, info->group);
            json_builder_set_member_name(b, "pending");
            json_builder_add_boolean_value(b, is_pending);
            json_builder_set_member_name(b, "devices");
            json_builder_begin_array(b);
        }
        hddAddDevice(b, info);
    }
    if (infos->len > 0) {
        json_builder_end_array(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


static void
hddAddDomain(JsonBuilder *b, hddDomain *dom, GPtrArray *tracked)
{
    guint i;

    json_builder_begin_object(b);
    hddBuildDomainDefinition(b, dom);
    json_builder_set_member_name(b, "busy");
    json_builder_add_boolean_value(b, dom->busy);
    json_builder_set_member_name(b, "devices");
    json_builder_begin_array(b);
    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);

        if (info->state == HD_DEVICE_ACTIVE && g_strcmp0(info->domain, dom->name) == 0)
            hddAddDevice(b, info);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
}


static JsonNode *
hddQueryDomains(hddDaemon *dmn, JsonObject *args, GError **error)
{
    static const hddArg spec[] = { { "name", 's', FALSE }, { NULL } };
    g_autoptr(GPtrArray) tracked = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GList) names = NULL;
    const char *name;
    GList *l;

    if (!hddCheckArgs(args, spec, error))
        return NULL;
    tracked = hdManagerListTracked(dmn->mgr);
    if ((name = hddArgString(args, "name"))) {
        hddDomain *dom = hddLookupDomain(dmn, name, error);

        if (!dom)
            return NULL;
        hddAddDomain(b, dom, tracked);
        return json_builder_get_root(b);
    }
    names = g_list_sort(g_hash_table_get_keys(dmn->domains), (GCompareFunc)strcmp);
    json_builder_begin_array(b);
    for (l = names; l; l = l->next)
        hddAddDomain(b, g_hash_table_lookup(dmn->domains, l->data), tracked);
    json_builder_end_array(b);
    return json_builder_get_root(b);
}


static JsonNode *
hddQueryStatus(hddDaemon *dmn)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GArray) pending = hdManagerPendingGroups(dmn->mgr);
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(dmn->mgr);
    g_auto(GStrv) sec_pending = hdSecurityManagerListPending(dmn->sec);
    guint i;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "version");
    json_builder_add_string_value(b, PACKAGE_VERSION);
    json_builder_set_member_name(b, "root");
    json_builder_add_string_value(b, dmn->config->root);
    json_builder_set_member_name(b, "state-dir");
    json_builder_add_string_value(b, dmn->config->state_dir);
    json_builder_set_member_name(b, "domains");
    json_builder_add_int_value(b, g_hash_table_size(dmn->domains));
    json_builder_set_member_name(b, "tracked-devices");
    json_builder_add_int_value(b, tracked->len);
    json_builder_set_member_name(b, "operations");
    json_builder_add_int_value(b, dmn->ops);
    json_builder_set_member_name(b, "clients");
    json_builder_add_int_value(b, hddServerClientCount());
    json_builder_set_member_name(b, "pending-groups");
    json_builder_begin_array(b);
    for (i = 0; pending && i < pending->len; i++)
        json_builder_add_int_value(b, g_array_index(pending, guint, i));
    json_builder_end_array(b);
    json_builder_set_member_name(b, "security-pending");
    json_builder_begin_array(b);
    for (i = 0; sec_pending && sec_pending[i]; i++)
        json_builder_add_string_value(b, sec_pending[i]);
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


/* A domain with unplugs pending keeps its QEMU (socket and a pid once
 * given): that QEMU still has the devices until its guest lets go, and a
 * monitor of another one would find them gone and release them. */
static gboolean
hddCheckQemuUnchanged(hddDomain *dom, JsonObject *args, gint64 pid, GError **error)
{
    const char *qmp = hddArgString(args, "qmp");
    g_autoptr(GString) pending = g_string_new(NULL);
    g_autoptr(GList) keys = NULL;
    GList *l;

    if (g_hash_table_size(dom->unplug_pending) == 0)
        return TRUE;
    if ((!json_object_has_member(args, "qmp") || g_strcmp0(qmp, dom->qmp) == 0) &&
        (!json_object_has_member(args, "pid") || dom->pid == 0 || pid == dom->pid))
        return TRUE;
    keys = g_list_sort(g_hash_table_get_keys(dom->unplug_pending), (GCompareFunc)strcmp);
    for (l = keys; l; l = l->next)
        g_string_append_printf(pending, "%s%s", l == keys ? "" : ", ", (char *)l->data);
    hdErrorSet(error, HD_ERROR_IN_USE,
               _("domain '%1$s' has the unplug of %2$s pending: its QEMU cannot change "
                 "until it ends (detach-device again) or the domain is destroyed"),
               dom->name, pending->str);
    return FALSE;
}


/* define-domain: create or update what the daemon knows about a guest. */
static JsonNode *
hddDefineDomain(hddDaemon *dmn, uid_t uid, JsonObject *args, GError **error)
{
    static const hddArg spec[] = {
        { "name", 's', TRUE }, { "qmp", 's', FALSE }, { "pid", 'i', FALSE },
        { "cgroup", 's', FALSE }, { "seclabel", 's', FALSE }, { NULL },
    };
    const char *name;
    const char *qmp;
    gint64 pid = 0;
    guint64 pid_start = 0;
    hddDomain *dom;
    gboolean created = FALSE;

    if (!hddCheckArgs(args, spec, error))
        return NULL;
    name = hddArgString(args, "name");
    qmp = hddArgString(args, "qmp");
    if (!hddCheckDomainName(name, error))
        return NULL;
    if (qmp && !g_path_is_absolute(qmp)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("QMP socket path '%1$s' is not absolute"), qmp);
        return NULL;
    }
    if (json_object_has_member(args, "pid")) {
        pid = json_object_get_int_member(args, "pid");
        if (pid < 0 || pid > G_MAXINT32) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG, _("invalid pid %1$" G_GINT64_FORMAT), pid);
            return NULL;
        }
        /* Remembered so that a destroy long after (a daemon restarted in
         * the middle of one) never signals a process that reused the pid. */
        if (pid > 0 && !(pid_start = hdProcessStartTime(HD_PROC_ROOT, (pid_t)pid))) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG, _("no process with pid %1$" G_GINT64_FORMAT),
                       pid);
            return NULL;
        }
        /* destroy signals it: checked here with a clear error, and again
         * (with the proof that it is the domain's QEMU) before a signal. */
        if (pid > 0 && !hdProcessCheckSignallable(HD_PROC_ROOT, (pid_t)pid,
                                                  uid == 0 ? -1 : (gint64)uid, error))
            return NULL;
    }
    if (!(dom = g_hash_table_lookup(dmn->domains, name))) {
        dom = hddDomainNew(name);
        dom->owner = uid;
        created = TRUE;
    } else if (!hddMayUseDomain(dom, uid, error)) {
        return NULL;
    } else if (dom->busy) {
        hdErrorSet(error, HD_ERROR_IN_USE, _("domain '%1$s' is busy"), name);
        return NULL;
    } else if (!hddCheckQemuUnchanged(dom, args, pid, error)) {
        return NULL;
    }
    /* The security manager validates the label and the cgroup. */
    if ((json_object_has_member(args, "cgroup") || json_object_has_member(args, "seclabel") ||
         created) &&
        !hdSecurityManagerSetDomain(dmn->sec, name,
                                    json_object_has_member(args, "seclabel") ?
                                    hddArgString(args, "seclabel") : dom->seclabel,
                                    json_object_has_member(args, "cgroup") ?
                                    hddArgString(args, "cgroup") : dom->cgroup, error)) {
        if (created)
            hddDomainFree(dom);
        return NULL;
    }
    if (json_object_has_member(args, "qmp")) {
        /* Another socket: the monitor of the old one goes. */
        if (g_strcmp0(dom->qmp, qmp) != 0)
            g_clear_pointer(&dom->monitor, hddMonitorFree);
        g_free(dom->qmp);
        dom->qmp = g_strdup(qmp);
    }
    if (json_object_has_member(args, "pid")) {
        dom->pid = pid;
        dom->pid_start = pid_start;
        dom->pid_uid = uid;
    }
    if (json_object_has_member(args, "cgroup")) {
        g_free(dom->cgroup);
        dom->cgroup = g_strdup(hddArgString(args, "cgroup"));
    }
    if (json_object_has_member(args, "seclabel")) {
        g_free(dom->seclabel);
        dom->seclabel = g_strdup(hddArgString(args, "seclabel"));
    }
    if (created)
        g_hash_table_insert(dmn->domains, dom->name, dom);
    /* A QEMU to keep a monitor connected to (it retries until one listens). */
    if (json_object_has_member(args, "qmp") || pid > 0)
        hddDomainStartMonitorOrWarn(dmn, dom);
    hddDomainsSave(dmn);
    g_info("domain %s defined", name);
    return NULL;
}


static JsonNode *
hddUndefineDomain(hddDaemon *dmn, uid_t uid, JsonObject *args, GError **error)
{
    static const hddArg spec[] = { { "name", 's', TRUE }, { NULL } };
    g_autoptr(GPtrArray) tracked = NULL;
    hddDomain *dom;
    guint i;

    if (!hddCheckArgs(args, spec, error) ||
        !(dom = hddLookupDomain(dmn, hddArgString(args, "name"), error)) ||
        !hddMayUseDomain(dom, uid, error))
        return NULL;
    tracked = hdManagerListTracked(dmn->mgr);
    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);

        if (g_strcmp0(info->domain, dom->name) == 0) {
            hdErrorSet(error, HD_ERROR_IN_USE,
                       _("domain '%1$s' still has devices: destroy it first"), dom->name);
            return NULL;
        }
    }
    if (dom->busy) {
        hdErrorSet(error, HD_ERROR_IN_USE, _("domain '%1$s' is busy"), dom->name);
        return NULL;
    }
    /* The table frees it. */
    g_hash_table_remove(dmn->domains, dom->name);
    hddDomainsSave(dmn);
    return NULL;
}


/* Workers. */

static JsonNode *
hddAddressesNode(GArray *addrs)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    guint i;

    json_builder_begin_array(b);
    for (i = 0; addrs && i < addrs->len; i++) {
        char buf[HD_PCI_ADDRESS_STRLEN];

        json_builder_add_string_value(b, hdPCIAddressFormat(&g_array_index(addrs, hdPCIAddress,
                                                                           i), buf));
    }
    json_builder_end_array(b);
    return json_builder_get_root(b);
}


static JsonNode *
hddWorkNodeDetach(hddOp *op, GError **error)
{
    g_autoptr(GArray) siblings = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();

    if (!hdManagerNodeDetach(op->dmn->mgr, &op->addr, &siblings, error))
        return NULL;
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "siblings-on-host");
    json_builder_add_value(b, hddAddressesNode(siblings));
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


static JsonNode *
hddWorkNodeReattach(hddOp *op, GError **error)
{
    hdManagerNodeReattach(op->dmn->mgr, &op->addr, error);
    return NULL;
}


static JsonNode *
hddWorkNodeReset(hddOp *op, GError **error)
{
    hdManagerNodeReset(op->dmn->mgr, &op->addr, error);
    return NULL;
}


/* The host addresses of @def's devices. */
static GArray *
hddDefAddresses(const hdDomainDef *def)
{
    GArray *addrs = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    guint i;

    for (i = 0; i < def->hostdevs->len; i++) {
        hdHostdevDef *hostdev = g_ptr_array_index(def->hostdevs, i);

        g_array_append_val(addrs, hostdev->addr);
    }
    return addrs;
}


/* Undo an assignment that failed after the manager made it: @addrs leave
 * @op's domain again (and their security set-up with them). */
static void
hddUndoAssign(hddOp *op, GArray *addrs)
{
    g_autoptr(GError) err = NULL;

    if (addrs->len > 0 && !hdManagerRelease(op->dmn->mgr, op->domain, addrs, &err))
        g_warning(_("domain %1$s: %2$s"), op->domain, err->message);
}


static JsonNode *
hddWorkPrepare(hddOp *op, GError **error)
{
    hdSecurityManager *sec = op->dmn->sec;

    if (!hdSecurityManagerSetDomainDef(sec, op->domain, op->def, error) ||
        !hdManagerPrepare(op->dmn->mgr, op->domain, op->def->hostdevs,
                          op->whole_group ? HD_PREPARE_WHOLE_GROUP : 0, error))
        return NULL;
    /* The guest must not start with half of its security set-up.  Only
     * this prepare's devices go: the domain may have had others before. */
    if (!hdSecurityManagerCheckDomain(sec, op->domain, error)) {
        g_autoptr(GArray) addrs = hddDefAddresses(op->def);

        hddUndoAssign(op, addrs);
        return NULL;
    }
    return NULL;
}


/* Every device of @def must be active in @domain. */
static gboolean
hddCheckOwned(hdManager *mgr, const char *domain, hdDomainDef *def, GError **error)
{
    guint i;

    for (i = 0; i < def->hostdevs->len; i++) {
        hdHostdevDef *hostdev = g_ptr_array_index(def->hostdevs, i);
        g_autoptr(hdDeviceInfo) info = hdManagerGetDevice(mgr, &hostdev->addr, error);
        char addr[HD_PCI_ADDRESS_STRLEN];

        if (!info)
            return FALSE;
        hdPCIAddressFormat(&hostdev->addr, addr);
        if (info->state != HD_DEVICE_ACTIVE) {
            hdErrorSet(error, HD_ERROR_NOT_FOUND, _("device %1$s is not assigned to %2$s"),
                       addr, domain);
            return FALSE;
        }
        if (g_strcmp0(info->domain, domain) != 0) {
            hdErrorSet(error, HD_ERROR_IN_USE, _("device %1$s is in use by domain %2$s"),
                       addr, info->domain);
            return FALSE;
        }
    }
    return TRUE;
}


/* The aliases of @def's devices whose unplug an earlier detach requested
 * (in @pending). */
static GStrv
hddRequestedAliases(GHashTable *pending, hdDomainDef *def)
{
    g_autoptr(GStrvBuilder) aliases = g_strv_builder_new();
    guint i;

    for (i = 0; i < def->hostdevs->len; i++) {
        hdHostdevDef *hostdev = g_ptr_array_index(def->hostdevs, i);
        g_autofree char *addr = hdPCIAddressToString(&hostdev->addr);

        if (g_hash_table_contains(pending, addr))
            g_strv_builder_add(aliases, hostdev->alias);
    }
    return g_strv_builder_end(aliases);
}


/* The reply of a detach: what became of the devices that left. */
static JsonNode *
hddDetachReply(const hdHotplugResult *result)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "released");
    json_builder_add_int_value(b, result->released);
    json_builder_set_member_name(b, "groups-given-back");
    json_builder_add_int_value(b, result->groups_given_back);
    json_builder_set_member_name(b, "groups-pending");
    json_builder_add_int_value(b, result->groups_watched);
    json_builder_set_member_name(b, "devices-waiting");
    json_builder_add_int_value(b, result->waiting);
    json_builder_set_member_name(b, "problem");
    json_builder_add_string_value(b, result->problem);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


/* Unplug @hostdevs on the domain's monitor, release, give back
 * (hotplug.h).  The devices still in the guest at the deadline go to
 * op->unplug_pending. */
static gboolean
hddHotplugDetach(hddOp *op, GPtrArray *hostdevs, hdQmp *qmp, hdHotplugResult *result,
                 GError **error)
{
    g_autoptr(hdHotplug) hotplug = hdHotplugNew(op->dmn->mgr);
    hdHotplugOptions opts;
    gboolean ok;

    hdHotplugOptionsInit(&opts);
    opts.unplug_timeout_ms = op->unplug_timeout_ms;
    opts.requested = (const char *const *)op->requested;
    ok = hdHotplugDetach(hotplug, qmp, op->domain, hostdevs, &opts, result, error);
    /* Groups still held are left pending; the daemon's sweep gives them
     * back once free. */
    op->unplug_pending = g_steal_pointer(&result->unplug_pending);
    return ok;
}


static JsonNode *
hddWorkDetach(hddOp *op, GError **error)
{
    hdHotplugResult result = { 0 };
    g_autoptr(GError) local = NULL;
    JsonNode *ret = NULL;
    hdQmp *qmp;

    /* Step 1: nothing is asked of QEMU for a device that is not the
     * domain's. */
    if (!hddCheckOwned(op->dmn->mgr, op->domain, op->def, error))
        return NULL;
    op->requested = hddRequestedAliases(op->pending, op->def);

    /* Step 2: unplug, release, give back. */
    qmp = hddMonitorBorrow(op->monitor, &local);
    if (qmp && hddHotplugDetach(op, op->def->hostdevs, qmp, &result, &local))
        ret = hddDetachReply(&result);
    hddMonitorReturn(op->monitor, qmp);
    hdHotplugResultClear(&result);
    if (ret)
        return ret;
    /* The monitor stays connected: the late DEVICE_DELETED is heard. */
    if (op->unplug_pending && g_error_matches(local, HD_ERROR, HD_ERROR_TIMEOUT))
        hdErrorSet(error, HD_ERROR_TIMEOUT,
                   _("%1$s; hostdevd keeps listening: it leaves domain %2$s as soon as QEMU "
                     "says the guest let it go"), local->message, op->domain);
    else
        g_propagate_error(error, g_steal_pointer(&local));
    return NULL;
}


/* Unplugs past their deadline (op->def, op->requested): the devices QEMU
 * no longer has leave the domain, as if their DEVICE_DELETED had come in
 * time; the others keep waiting.  Started by a late DEVICE_DELETED, and
 * whenever the monitor (re)connects: events may have gone unheard. */
static JsonNode *
hddWorkResolve(hddOp *op, GError **error)
{
    g_autoptr(GPtrArray) gone = g_ptr_array_new();
    g_autoptr(GHashTable) ids = NULL;
    hdHotplugResult result = { 0 };
    hdQmp *qmp;
    guint i;

    if ((qmp = hddMonitorBorrow(op->monitor, error)) &&
        (ids = hdQemuListDevices(qmp, HDD_QMP_TIMEOUT_MS, error))) {
        for (i = 0; i < op->def->hostdevs->len; i++) {
            hdHostdevDef *hostdev = g_ptr_array_index(op->def->hostdevs, i);

            if (!g_hash_table_contains(ids, hostdev->alias))
                g_ptr_array_add(gone, hostdev);
        }
        if (gone->len > 0 && hddHotplugDetach(op, gone, qmp, &result, error))
            g_info("domain %s: %u device(s) the guest let go after the deadline released, "
                   "%u group(s) given back", op->domain, result.released,
                   result.groups_given_back);
        hdHotplugResultClear(&result);
    }
    hddMonitorReturn(op->monitor, qmp);
    return NULL;
}


/* device_add's arguments for @hostdev.  Its guest <address> places it:
 * bus N is the controller libvirt names pci.N (bus 0: QEMU's root bus);
 * without one QEMU picks a bus, which on q35 is pcie.0, where it refuses
 * hotplug. */
static JsonNode *
hddDeviceAddArgs(const hdHostdevDef *hostdev)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    char addr[HD_PCI_ADDRESS_STRLEN];

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "driver");
    json_builder_add_string_value(b, "vfio-pci");
    json_builder_set_member_name(b, "host");
    json_builder_add_string_value(b, hdPCIAddressFormat(&hostdev->addr, addr));
    json_builder_set_member_name(b, "id");
    json_builder_add_string_value(b, hostdev->alias);
    if (hostdev->guest) {
        g_autofree char *bus = g_strdup_printf("pci.%u", hostdev->guest->bus);
        g_autofree char *slot = g_strdup_printf("0x%x.0x%x", hostdev->guest->slot,
                                                hostdev->guest->function);

        if (hostdev->guest->bus != 0) {
            json_builder_set_member_name(b, "bus");
            json_builder_add_string_value(b, bus);
        }
        json_builder_set_member_name(b, "addr");
        json_builder_add_string_value(b, slot);
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


static JsonNode *
hddWorkAttach(hddOp *op, GError **error)
{
    g_autoptr(GArray) undo = NULL;
    hdQmp *qmp = NULL;
    gboolean borrowed = FALSE;
    guint i;

    /* Step 1: the host side, as for a guest that starts. */
    if (!hdSecurityManagerSetDomainDef(op->dmn->sec, op->domain, op->def, error) ||
        !hdManagerPrepare(op->dmn->mgr, op->domain, op->def->hostdevs, 0, error))
        return NULL;
    undo = hddDefAddresses(op->def);

    /* Step 2: device_add each; the ones QEMU did not take are released. */
    if (!hdSecurityManagerCheckDomain(op->dmn->sec, op->domain, error))
        goto cleanup;
    borrowed = TRUE;
    if (!(qmp = hddMonitorBorrow(op->monitor, error)))
        goto cleanup;
    for (i = 0; i < op->def->hostdevs->len; i++) {
        g_autoptr(JsonNode) args = hddDeviceAddArgs(g_ptr_array_index(op->def->hostdevs, i));
        g_autoptr(JsonNode) ret = NULL;

        if (!(ret = hdQmpCommand(qmp, "device_add", args, NULL, 0, HDD_QMP_TIMEOUT_MS,
                                 error)))
            goto cleanup;
        g_array_remove_index(undo, 0);
    }

 cleanup:
    if (borrowed)
        hddMonitorReturn(op->monitor, qmp);
    hddUndoAssign(op, undo);
    return NULL;
}


static void
hddDestroyProgress(guint given_back, guint total, gpointer opaque)
{
    hddOp *op = opaque;
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "domain");
    json_builder_add_string_value(b, op->domain);
    json_builder_set_member_name(b, "given-back");
    json_builder_add_int_value(b, given_back);
    json_builder_set_member_name(b, "total");
    json_builder_add_int_value(b, total);
    json_builder_end_object(b);
    hddEmitEvent("DESTROY_PROGRESS", json_builder_get_root(b));
}


static JsonNode *
hddWorkDestroy(hddOp *op, GError **error)
{
    hdDestroyOptions opts = { .progress = hddDestroyProgress, .progress_opaque = op,
                              .pid_start_time = op->pid_start, .verify_qemu = TRUE,
                              .uid = op->pid_uid == 0 ? -1 : (gint64)op->pid_uid };
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();
    guint i;

    /* The process listening on the domain's QMP socket is its QEMU, even
     * before it opened any of the domain's groups. */
    if (op->pid > 0 && op->qmp) {
        g_autoptr(GError) local = NULL;

        if (!(opts.monitor_pid = hdQmpSocketPeerPid(op->qmp, &local)))
            g_info("domain %s: %s", op->domain, local->message);
    }
    if (!hdDestroyDomain(op->dmn->mgr, op->domain, op->pid, &opts, &report, error))
        return NULL;
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "devices");
    json_builder_add_int_value(b, report->devices);
    json_builder_set_member_name(b, "given-back");
    json_builder_add_int_value(b, report->given_back);
    json_builder_set_member_name(b, "stay");
    json_builder_add_int_value(b, report->stay);
    json_builder_set_member_name(b, "killed");
    json_builder_add_boolean_value(b, report->killed);
    json_builder_set_member_name(b, "adopted");
    json_builder_add_int_value(b, report->adopted);
    json_builder_set_member_name(b, "terminate-seconds");
    json_builder_add_double_value(b, report->terminate_s);
    json_builder_set_member_name(b, "give-back-seconds");
    json_builder_add_double_value(b, report->give_back_s);
    json_builder_set_member_name(b, "problems");
    json_builder_begin_array(b);
    for (i = 0; report->problems && i < report->problems->len; i++)
        json_builder_add_string_value(b, g_ptr_array_index(report->problems, i));
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


static void
hddOpThread(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
    hddOp *op = data;
    g_autoptr(GError) error = NULL;
    JsonNode *ret = NULL;

    if (!op->xml || hddOpParseXML(op, &error))
        ret = op->func(op, &error);
    if (error) {
        if (ret)
            json_node_unref(ret);
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    g_task_return_pointer(task, ret, (GDestroyNotify)json_node_unref);
}


/* @ret (an object, or NULL for an empty one) with the member "notes". */
static JsonNode *
hddReplyNotes(JsonNode *ret, const hdDomainDef *def)
{
    g_autoptr(JsonArray) notes = json_array_sized_new(def->notes->len);
    guint i;

    if (!ret) {
        ret = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(ret, json_object_new());
    } else if (!JSON_NODE_HOLDS_OBJECT(ret)) {
        return ret;
    }
    for (i = 0; i < def->notes->len; i++)
        json_array_add_string_element(notes, g_ptr_array_index(def->notes, i));
    json_object_set_array_member(json_node_get_object(ret), "notes",
                                 g_steal_pointer(&notes));
    return ret;
}


static void hddDomainResolve(hddDaemon *dmn, hddDomain *dom);


/* After a detach (or the resolution of late unplugs): the devices that
 * left the domain forget their alias and pending unplug; those still in
 * the guest at the deadline wait for their DEVICE_DELETED, durably. */
static void
hddDomainUnplugged(hddDaemon *dmn, hddDomain *dom, hddOp *op)
{
    guint i;

    for (i = 0; i < op->def->hostdevs->len; i++) {
        hdHostdevDef *hostdev = g_ptr_array_index(op->def->hostdevs, i);
        g_autofree char *addr = hdPCIAddressToString(&hostdev->addr);

        if (hddStillAssigned(dmn, dom, &hostdev->addr))
            continue;
        g_hash_table_remove(dom->aliases, addr);
        g_hash_table_remove(dom->unplug_pending, addr);
    }
    for (i = 0; op->unplug_pending && i < op->unplug_pending->len; i++) {
        const hdPCIAddress *pci = &g_array_index(op->unplug_pending, hdPCIAddress, i);
        guint j;

        g_hash_table_add(dom->unplug_pending, hdPCIAddressToString(pci));
        /* Its alias is how QEMU will name it. */
        for (j = 0; j < op->def->hostdevs->len; j++) {
            hdHostdevDef *hostdev = g_ptr_array_index(op->def->hostdevs, j);

            if (hdPCIAddressCompare(&hostdev->addr, pci) == 0 && hostdev->alias)
                g_hash_table_insert(dom->aliases, hdPCIAddressToString(pci),
                                    g_strdup(hostdev->alias));
        }
    }
}


/* Back on the main thread: the domain table learns the outcome, then the
 * client (if any: a resolution has none) gets its reply. */
static void
hddOpDone(GObject *source, GAsyncResult *res, gpointer opaque)
{
    hddOp *op = g_task_get_task_data(G_TASK(res));
    hddDaemon *dmn = op->dmn;
    g_autoptr(GError) error = NULL;
    JsonNode *ret = g_task_propagate_pointer(G_TASK(res), &error);
    hddDomain *dom = op->domain ? g_hash_table_lookup(dmn->domains, op->domain) : NULL;
    guint i;

    dmn->ops--;
    hddClientOpDone(op->client);
    if (dom) {
        dom->busy = FALSE;
        if (!error && op->func == hddWorkDestroy) {
            /* Its QEMU is gone, and every device left the domain. */
            dom->pid = 0;
            dom->pid_start = 0;
            g_hash_table_remove_all(dom->unplug_pending);
            g_hash_table_remove_all(dom->aliases);
            g_clear_pointer(&dom->monitor, hddMonitorFree);
        }
        if (op->def && (op->func == hddWorkDetach || op->func == hddWorkResolve))
            hddDomainUnplugged(dmn, dom, op);
        for (i = 0; !error && op->def && op->func != hddWorkDetach &&
             op->func != hddWorkResolve && i < op->def->hostdevs->len; i++) {
            hdHostdevDef *hostdev = g_ptr_array_index(op->def->hostdevs, i);

            if (hostdev->alias)
                g_hash_table_insert(dom->aliases, hdPCIAddressToString(&hostdev->addr),
                                    g_strdup(hostdev->alias));
        }
        hddDomainsSave(dmn);
    }
    if (!op->client) {
        if (error)
            g_info("domain %s: %s", op->domain, error->message);
        g_clear_pointer(&ret, json_node_unref);
    } else if (error) {
        g_info("%s", error->message);
        hddSend(op->client, hddErrorReply(error, op->id));
    } else {
        if (op->def)
            ret = hddReplyNotes(ret, op->def);
        hddSend(op->client, hddReply(ret, op->id));
    }
    /* A late DEVICE_DELETED that came meanwhile. */
    if (dom && dom->resolve)
        hddDomainResolve(dmn, dom);
    /* A group the operation left pending is watched from now. */
    if (dmn->ops == 0)
        hddSweepNow(dmn);
}


static void
hddOpStart(hddOp *op)
{
    g_autoptr(GTask) task = g_task_new(NULL, NULL, hddOpDone, NULL);

    op->dmn->ops++;
    hddClientOpStarted(op->client);
    if (op->domain)
        ((hddDomain *)g_hash_table_lookup(op->dmn->domains, op->domain))->busy = TRUE;
    g_task_set_task_data(task, op, (GDestroyNotify)hddOpFree);
    g_task_run_in_thread(task, hddOpThread);
}


/* query-devices reads sysfs for every PCI device: on a worker, as every
 * command that touches the host, so that a flood of them never holds up
 * the main loop and the other clients.  Not an operation: it changes
 * nothing, so the sweep does not wait for it (only a shutdown does). */
static void
hddQueryThread(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
    hddOp *op = data;
    GError *error = NULL;
    JsonNode *ret = hddQueryDevices(op->dmn, &error);

    if (!ret)
        g_task_return_error(task, error);
    else
        g_task_return_pointer(task, ret, (GDestroyNotify)json_node_unref);
}


static void
hddQueryDone(GObject *source, GAsyncResult *res, gpointer opaque)
{
    hddOp *op = g_task_get_task_data(G_TASK(res));
    g_autoptr(GError) error = NULL;
    JsonNode *ret = g_task_propagate_pointer(G_TASK(res), &error);

    op->dmn->queries--;
    hddClientOpDone(op->client);
    hddSend(op->client, error ? hddErrorReply(error, op->id) : hddReply(ret, op->id));
}


static void
hddQueryStart(hddOp *op)
{
    g_autoptr(GTask) task = g_task_new(NULL, NULL, hddQueryDone, NULL);

    op->dmn->queries++;
    hddClientOpStarted(op->client);
    g_task_set_task_data(task, op, (GDestroyNotify)hddOpFree);
    g_task_run_in_thread(task, hddQueryThread);
}


static hdDomainDef *
hddParseXML(const char *xml, GError **error)
{
    g_autoptr(hdDomainDef) def = hdDomainDefParseString(xml, strlen(xml), error);

    if (!def)
        return NULL;
    if (def->hostdevs->len == 0) {
        /* What was skipped says why. */
        if (def->notes->len > 0) {
            g_autofree char *notes = NULL;

            g_ptr_array_add(def->notes, NULL);
            notes = g_strjoinv("; ", (char **)def->notes->pdata);
            hdErrorSet(error, HD_ERROR_INVALID_ARG, _("the XML has no PCI hostdev: %1$s"),
                       notes);
        } else {
            hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s", _("the XML has no PCI hostdev"));
        }
        return NULL;
    }
    return g_steal_pointer(&def);
}


/* What the XML parser skipped goes to the log when the operation starts,
 * and into its reply (hddReplyNotes). */
static void
hddLogNotes(const char *command, const char *domain, const hdDomainDef *def)
{
    guint i;

    for (i = 0; i < def->notes->len; i++)
        g_warning(_("%1$s of domain %2$s: %3$s"), command, domain,
                  (const char *)g_ptr_array_index(def->notes, i));
}


/* Step 1 of every domain operation: the domain exists and is not busy. */
static hddDomain *
hddDomainForOp(hddDaemon *dmn, hddClient *client, JsonObject *args, gboolean need_qmp,
               GError **error)
{
    hddDomain *dom = hddLookupDomain(dmn, hddArgString(args, "domain"), error);

    if (!dom || !hddMayUseDomain(dom, hddClientGetUid(client), error))
        return NULL;
    if (dom->busy) {
        hdErrorSet(error, HD_ERROR_IN_USE, _("domain '%1$s' is busy"), dom->name);
        return NULL;
    }
    if (need_qmp && !dom->qmp) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("domain '%1$s' has no QMP socket: define it with one"), dom->name);
        return NULL;
    }
    return dom;
}


/* Aliases: from the XML, else what the domain recorded, else (attach
 * only) one made up from the address. */
static gboolean
hddFillAliases(GHashTable *aliases, hdDomainDef *def, gboolean invent, GError **error)
{
    guint i;

    for (i = 0; i < def->hostdevs->len; i++) {
        hdHostdevDef *hostdev = g_ptr_array_index(def->hostdevs, i);
        g_autofree char *addr = hdPCIAddressToString(&hostdev->addr);
        const char *known = g_hash_table_lookup(aliases, addr);

        if (hostdev->alias)
            continue;
        if (known) {
            hostdev->alias = g_strdup(known);
        } else if (invent) {
            hostdev->alias = g_strdup_printf("hostdev-%04x-%02x-%02x-%x", hostdev->addr.domain,
                                             hostdev->addr.bus, hostdev->addr.slot,
                                             hostdev->addr.function);
        } else {
            hdErrorSet(error, HD_ERROR_INVALID_ARG,
                       _("device %1$s has no alias in the XML and none is known"), addr);
            return FALSE;
        }
    }
    return TRUE;
}


static GHashTable *
hddCopyAliases(GHashTable *aliases)
{
    GHashTable *copy = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_iter_init(&iter, aliases);
    while (g_hash_table_iter_next(&iter, &key, &value))
        g_hash_table_insert(copy, g_strdup(key), g_strdup(value));
    return copy;
}


/* On the worker, before the operation: a large document never holds up
 * the main loop (and so every other client).  The domain is busy
 * meanwhile, so that its aliases cannot change. */
static gboolean
hddOpParseXML(hddOp *op, GError **error)
{
    g_autoptr(hdDomainDef) def = hddParseXML(op->xml, error);

    if (!def)
        return FALSE;
    if (def->name && strcmp(def->name, op->domain) != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("the XML describes domain '%1$s', not '%2$s'"), def->name, op->domain);
        return FALSE;
    }
    if (op->aliases && !hddFillAliases(op->aliases, def, op->invent_aliases, error))
        return FALSE;
    hddLogNotes(op->command, op->domain, def);
    op->def = g_steal_pointer(&def);
    return TRUE;
}


static hddOp *
hddOpNew(hddDaemon *dmn, hddClient *client, JsonNode *id, hddWorkFunc func)
{
    hddOp *op = g_new0(hddOp, 1);

    op->dmn = dmn;
    op->client = client ? hddClientRef(client) : NULL;
    op->id = id ? json_node_copy(id) : NULL;
    op->func = func;
    return op;
}


/* detach-device's "unplug-timeout": milliseconds, 1 to an hour. */
static gboolean
hddCheckUnplugTimeout(const char *command, JsonObject *args, GError **error)
{
    gint64 ms = json_object_get_int_member(args, "unplug-timeout");

    if (strcmp(command, "detach-device") != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s",
                   _("'unplug-timeout' is for detach-device only"));
        return FALSE;
    }
    if (ms < 1 || ms > HDD_MAX_UNPLUG_TIMEOUT_MS) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("'unplug-timeout' must be 1 to %1$u ms, not %2$" G_GINT64_FORMAT),
                   HDD_MAX_UNPLUG_TIMEOUT_MS, ms);
        return FALSE;
    }
    return TRUE;
}


/* On the main context: what the domain's monitor said.  Unplugs past
 * their deadline are looked at when the monitor (re)connected (it may
 * have missed their DEVICE_DELETED), and a device QEMU deleted is looked
 * at whoever asked for it: an unplug past its deadline, or the guest that
 * ejected it.  A detach running for it releases it itself. */
static void
hddMonitorNoticed(const char *domain, hddMonitorNoticeType type, const char *alias,
                  gpointer opaque)
{
    hddDaemon *dmn = opaque;
    hddDomain *dom = g_hash_table_lookup(dmn->domains, domain);
    GHashTableIter iter;
    gpointer key;
    gpointer value;
    hdPCIAddress addr;

    if (!dom)
        return;
    if (type == HDD_MONITOR_DEVICE_DELETED) {
        g_hash_table_iter_init(&iter, dom->aliases);
        while (g_hash_table_iter_next(&iter, &key, &value)) {
            if (g_strcmp0(value, alias) != 0 || !hdPCIAddressParse(key, &addr, NULL) ||
                !hddStillAssigned(dmn, dom, &addr))
                continue;
            g_info("domain %s: QEMU deleted %s", domain, alias);
            /* Durably: hostdevd may stop before it is released. */
            if (g_hash_table_add(dom->unplug_pending, g_strdup(key)))
                hddDomainsSave(dmn);
        }
    }
    hddDomainResolve(dmn, dom);
}


/* The domain's monitor, if it has a QMP socket and none yet. */
static gboolean
hddDomainStartMonitor(hddDaemon *dmn, hddDomain *dom, GError **error)
{
    if (dom->qmp && !dom->monitor &&
        !(dom->monitor = hddMonitorNew(dom->name, dom->qmp, hddMonitorNoticed, dmn, error)))
        return FALSE;
    return TRUE;
}


/* ... where nobody waits for an answer: attach and detach start it again. */
static void
hddDomainStartMonitorOrWarn(hddDaemon *dmn, hddDomain *dom)
{
    g_autoptr(GError) error = NULL;

    if (!hddDomainStartMonitor(dmn, dom, &error))
        g_warning(_("domain %1$s: %2$s"), dom->name, error->message);
}


/* Look at the domain's unplugs past their deadline (hddWorkResolve), now
 * or once it is not busy. */
static void
hddDomainResolve(hddDaemon *dmn, hddDomain *dom)
{
    g_autoptr(GStrvBuilder) aliases = g_strv_builder_new();
    g_autoptr(hddOp) op = NULL;
    GHashTableIter iter;
    gpointer key;

    dom->resolve = FALSE;
    if (g_hash_table_size(dom->unplug_pending) == 0)
        return;
    if (dom->busy) {
        dom->resolve = TRUE;
        return;
    }
    /* Its connection says when to look. */
    if (!dom->monitor) {
        hddDomainStartMonitorOrWarn(dmn, dom);
        return;
    }
    op = hddOpNew(dmn, NULL, NULL, hddWorkResolve);
    op->domain = g_strdup(dom->name);
    op->monitor = dom->monitor;
    op->def = hdDomainDefNew();
    g_hash_table_iter_init(&iter, dom->unplug_pending);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        const char *alias = g_hash_table_lookup(dom->aliases, key);
        hdHostdevDef *hostdev;

        /* Recorded with its alias; without one QEMU cannot be asked. */
        if (!alias)
            continue;
        hostdev = g_new0(hdHostdevDef, 1);
        hdPCIAddressParse(key, &hostdev->addr, NULL);
        hostdev->alias = g_strdup(alias);
        g_ptr_array_add(op->def->hostdevs, hostdev);
        g_strv_builder_add(aliases, alias);
    }
    op->requested = g_strv_builder_end(aliases);
    hddOpStart(g_steal_pointer(&op));
}


static gboolean
hddDispatchOp(hddDaemon *dmn, hddClient *client, const char *command, JsonObject *args,
              JsonNode *id, GError **error)
{
    static const hddArg addr_spec[] = { { "address", 's', TRUE }, { NULL } };
    static const hddArg xml_spec[] = {
        { "domain", 's', TRUE }, { "xml", 's', TRUE }, { "whole-group", 'b', FALSE },
        { "unplug-timeout", 'i', FALSE }, { NULL },
    };
    static const hddArg dom_spec[] = { { "domain", 's', TRUE }, { NULL } };
    g_autoptr(hddOp) op = NULL;
    hddDomain *dom;

    if (g_str_has_prefix(command, "nodedev-")) {
        hdPCIAddress addr;
        hddWorkFunc func = strcmp(command, "nodedev-detach") == 0 ? hddWorkNodeDetach :
                           strcmp(command, "nodedev-reattach") == 0 ? hddWorkNodeReattach :
                           strcmp(command, "nodedev-reset") == 0 ? hddWorkNodeReset : NULL;

        if (!func)
            return FALSE;
        if (!hddCheckArgs(args, addr_spec, error) ||
            !hdPCIAddressParse(hddArgString(args, "address"), &addr, error))
            return TRUE;
        op = hddOpNew(dmn, client, id, func);
        op->addr = addr;
    } else if (strcmp(command, "prepare") == 0 || strcmp(command, "attach-device") == 0 ||
               strcmp(command, "detach-device") == 0) {
        gboolean prepare = strcmp(command, "prepare") == 0;
        gboolean attach = strcmp(command, "attach-device") == 0;

        if (!hddCheckArgs(args, xml_spec, error) ||
            !(dom = hddDomainForOp(dmn, client, args, !prepare, error)))
            return TRUE;
        if (!prepare && json_object_has_member(args, "whole-group")) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s",
                       _("'whole-group' is for prepare only"));
            return TRUE;
        }
        if (json_object_has_member(args, "unplug-timeout") &&
            !hddCheckUnplugTimeout(command, args, error))
            return TRUE;
        op = hddOpNew(dmn, client, id,
                      prepare ? hddWorkPrepare : attach ? hddWorkAttach : hddWorkDetach);
        op->domain = g_strdup(dom->name);
        op->qmp = g_strdup(dom->qmp);
        op->command = prepare ? "prepare" : attach ? "attach-device" : "detach-device";
        op->xml = g_strdup(hddArgString(args, "xml"));
        if (!prepare)
            op->aliases = hddCopyAliases(dom->aliases);
        op->invent_aliases = attach;
        if (prepare && json_object_has_member(args, "whole-group"))
            op->whole_group = json_object_get_boolean_member(args, "whole-group");
        if (!prepare) {
            if (!hddDomainStartMonitor(dmn, dom, error))
                return TRUE;
            op->monitor = dom->monitor;
        }
        if (!prepare && !attach) {
            op->unplug_timeout_ms = json_object_has_member(args, "unplug-timeout") ?
                (guint)json_object_get_int_member(args, "unplug-timeout") :
                dmn->config->unplug_timeout_ms;
            /* A set: its values are all NULL. */
            op->pending = hddCopyAliases(dom->unplug_pending);
        }
    } else if (strcmp(command, "destroy") == 0) {
        if (!hddCheckArgs(args, dom_spec, error) ||
            !(dom = hddDomainForOp(dmn, client, args, FALSE, error)))
            return TRUE;
        op = hddOpNew(dmn, client, id, hddWorkDestroy);
        op->domain = g_strdup(dom->name);
        op->qmp = g_strdup(dom->qmp);
        op->pid = dom->pid;
        op->pid_start = dom->pid_start;
        op->pid_uid = dom->pid_uid;
    } else {
        return FALSE;
    }
    hddOpStart(g_steal_pointer(&op));
    return TRUE;
}


void
hddDispatch(hddDaemon *dmn, hddClient *client, const char *command, JsonObject *args,
            JsonNode *id)
{
    g_autoptr(GError) error = NULL;
    JsonNode *ret = NULL;

    dmn->served++;
    g_debug("command %s", command);
    if (strcmp(command, "query-devices") == 0) {
        static const hddArg spec[] = { { NULL } };

        if (hddCheckArgs(args, spec, &error)) {
            hddQueryStart(hddOpNew(dmn, client, id, NULL));
            return;
        }
    } else if (strcmp(command, "query-domains") == 0) {
        ret = hddQueryDomains(dmn, args, &error);
    } else if (strcmp(command, "query-status") == 0) {
        static const hddArg spec[] = { { NULL } };

        if (hddCheckArgs(args, spec, &error))
            ret = hddQueryStatus(dmn);
    } else if (strcmp(command, "define-domain") == 0) {
        ret = hddDefineDomain(dmn, hddClientGetUid(client), args, &error);
    } else if (strcmp(command, "undefine-domain") == 0) {
        ret = hddUndefineDomain(dmn, hddClientGetUid(client), args, &error);
    } else if (hddDispatchOp(dmn, client, command, args, id, &error)) {
        /* Answered by the worker, unless the arguments were refused. */
        if (!error)
            return;
    } else {
        g_autofree char *msg = g_strdup_printf(_("the command %1$s has not been found"), command);
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "error");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "class");
        json_builder_add_string_value(b, "CommandNotFound");
        json_builder_set_member_name(b, "desc");
        json_builder_add_string_value(b, msg);
        json_builder_end_object(b);
        if (id) {
            json_builder_set_member_name(b, "id");
            json_builder_add_value(b, json_node_copy(id));
        }
        json_builder_end_object(b);
        hddSend(client, json_builder_get_root(b));
        return;
    }
    if (error)
        hddSend(client, hddErrorReply(error, id));
    else
        hddSend(client, hddReply(ret, id));
}


/* The sweep: groups left pending (still held when their last device left,
 * or found so by the reconciliation of a restarted daemon) are given back
 * once free: at once when their release watch (hdd-watch.c) says so, and
 * every HDD_SWEEP_FALLBACK_TICKS ticks anyway, a safety net for a watch
 * that could not be set up.  Each tick also gives the watcher the pending
 * list.  It waits while operations run, since they give back groups
 * themselves. */
#define HDD_SWEEP_FALLBACK_TICKS 20

static void
hddSweepThread(GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
    hddDaemon *dmn = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) sec_error = NULL;
    guint n = hdManagerGiveBackPending(dmn->mgr, &error);

    if (error)
        g_info("give-back: %s", error->message);
    if (n > 0)
        g_info("gave back %u pending group(s)", n);
    hdSecurityManagerRetry(dmn->sec, &sec_error);
    g_task_return_boolean(task, TRUE);
}


static gboolean hddSweep(gpointer opaque);


static gboolean
hddSecurityPending(hddDaemon *dmn)
{
    g_auto(GStrv) pending = hdSecurityManagerListPending(dmn->sec);

    return pending && pending[0];
}

static void
hddSweepDone(GObject *source, GAsyncResult *res, gpointer opaque)
{
    hddDaemon *dmn = opaque;

    dmn->sweeping = FALSE;
    /* The groups still pending get their watches now. */
    hddSweep(dmn);
}


static gboolean
hddSweep(gpointer opaque)
{
    hddDaemon *dmn = opaque;
    g_autoptr(GArray) pending = NULL;
    g_autoptr(GTask) task = NULL;

    if (dmn->sweeping || dmn->ops > 0)
        return G_SOURCE_CONTINUE;
    pending = hdManagerPendingGroups(dmn->mgr);
    if (dmn->watcher)
        hddWatcherSync(dmn->watcher, pending);
    /* A security cleanup left pending (a VF restore that failed) is
     * retried too, even with no group pending. */
    if ((pending->len == 0 && !hddSecurityPending(dmn)) ||
        (!dmn->group_freed && dmn->sweep_ticks < HDD_SWEEP_FALLBACK_TICKS))
        return G_SOURCE_CONTINUE;
    dmn->group_freed = FALSE;
    dmn->sweep_ticks = 0;
    dmn->sweeping = TRUE;
    task = g_task_new(NULL, NULL, hddSweepDone, dmn);
    g_task_set_task_data(task, dmn, NULL);
    g_task_run_in_thread(task, hddSweepThread);
    return G_SOURCE_CONTINUE;
}


/* glibc keeps what the daemon's threads free in their arenas (up to 8 a
 * core, each growing on its own): after bursts of requests on workers and
 * monitor threads that come and go, hostdevd held on to memory it no
 * longer used, its RSS creeping up by about 100 KiB every 1,000 requests
 * of the soak (bench/bench-soak.py) while what was in use grew by 20.
 * Once the daemon is idle after some requests, that memory goes back:
 * all of it since the threads share the main arena (hddMallocSetup),
 * whose free top malloc_trim() gives back too, unlike a thread arena's. */
static void
hddTrim(hddDaemon *dmn)
{
    if (dmn->served == dmn->trimmed || dmn->ops > 0 || dmn->queries > 0 || dmn->sweeping)
        return;
    dmn->trimmed = dmn->served;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}


static gboolean
hddSweepTick(gpointer opaque)
{
    hddDaemon *dmn = opaque;

    dmn->sweep_ticks++;
    hddTrim(dmn);
    return hddSweep(dmn);
}


/* A release watch found a pending group free. */
static void
hddGroupFreed(gpointer opaque)
{
    hddDaemon *dmn = opaque;

    dmn->group_freed = TRUE;
    hddSweep(dmn);
}


void
hddStartSweeper(hddDaemon *dmn)
{
    dmn->watcher = hddWatcherNew(hdManagerGetHost(dmn->mgr), hddGroupFreed, dmn);
    /* What the reconciliation left pending is tried at once. */
    dmn->group_freed = TRUE;
    hddSweep(dmn);
    g_timeout_add(dmn->config->sweep_ms, hddSweepTick, dmn);
}


void
hddSweepNow(hddDaemon *dmn)
{
    hddSweep(dmn);
}
