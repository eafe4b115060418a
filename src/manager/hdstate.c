/*
 * hdstate.c: the manager's device records and their durable form
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

#include <json-glib/json-glib.h>

#include "hdinternal.h"
#include "hdfile.h"
#include "hdstate.h"

/* A state file is small (a record per device); anything larger is damage. */
#define HD_STATE_MAX_SIZE (16 * 1024 * 1024)


hdDeviceRecord *
hdDeviceRecordNew(const hdPCIAddress *addr, unsigned int group)
{
    hdDeviceRecord *rec = g_new0(hdDeviceRecord, 1);

    rec->addr = *addr;
    rec->group = group;
    rec->state = HD_DEVICE_INACTIVE;
    return rec;
}


void
hdDeviceRecordFree(hdDeviceRecord *rec)
{
    if (!rec)
        return;
    g_free(rec->domain);
    g_free(rec->original_driver);
    g_free(rec->original_override);
    hdDeviceRecordFree(rec->previous);
    g_free(rec);
}


hdDeviceRecord *
hdDeviceRecordCopy(const hdDeviceRecord *rec)
{
    hdDeviceRecord *copy = g_memdup2(rec, sizeof(*rec));

    copy->domain = g_strdup(rec->domain);
    copy->original_driver = g_strdup(rec->original_driver);
    copy->original_override = g_strdup(rec->original_override);
    copy->previous = rec->previous ? hdDeviceRecordCopy(rec->previous) : NULL;
    return copy;
}


GPtrArray *
hdDeviceRecordListNew(void)
{
    return g_ptr_array_new_with_free_func((GDestroyNotify)hdDeviceRecordFree);
}


GPtrArray *
hdDeviceRecordListCopy(GPtrArray *records)
{
    GPtrArray *copy = hdDeviceRecordListNew();
    guint i;

    for (i = 0; i < records->len; i++)
        g_ptr_array_add(copy, hdDeviceRecordCopy(g_ptr_array_index(records, i)));
    return copy;
}


static void
hdStateAddString(JsonBuilder *b, const char *member, const char *value)
{
    json_builder_set_member_name(b, member);
    if (value)
        json_builder_add_string_value(b, value);
    else
        json_builder_add_null_value(b);
}


static void
hdStateBuildRecord(JsonBuilder *b, const hdDeviceRecord *rec)
{
    char addr[HD_PCI_ADDRESS_STRLEN];

    json_builder_begin_object(b);
    hdStateAddString(b, "address", hdPCIAddressFormat(&rec->addr, addr));
    json_builder_set_member_name(b, "group");
    json_builder_add_int_value(b, rec->group);
    hdStateAddString(b, "state", hdDeviceStateToString(rec->state));
    hdStateAddString(b, "domain", rec->domain);
    json_builder_set_member_name(b, "managed");
    json_builder_add_boolean_value(b, rec->managed);
    json_builder_set_member_name(b, "detached");
    json_builder_add_boolean_value(b, rec->detached);
    json_builder_set_member_name(b, "give_back");
    json_builder_add_boolean_value(b, rec->give_back);
    hdStateAddString(b, "original_driver", rec->original_driver);
    hdStateAddString(b, "original_override", rec->original_override);
    json_builder_set_member_name(b, "in_prepare");
    json_builder_add_boolean_value(b, rec->in_prepare);
    json_builder_set_member_name(b, "previous");
    if (rec->previous)
        hdStateBuildRecord(b, rec->previous);
    else
        json_builder_add_null_value(b);
    json_builder_end_object(b);
}


char *
hdStateFormat(GPtrArray *records)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    guint i;

    json_builder_begin_object(b);
    hdStateAddString(b, "format", HD_STATE_FORMAT);
    json_builder_set_member_name(b, "version");
    json_builder_add_int_value(b, HD_STATE_VERSION);
    json_builder_set_member_name(b, "devices");
    json_builder_begin_array(b);
    for (i = 0; i < records->len; i++)
        hdStateBuildRecord(b, g_ptr_array_index(records, i));
    json_builder_end_array(b);
    json_builder_end_object(b);

    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    return json_generator_to_data(gen, NULL);
}


gboolean
hdStateSave(const char *path, GPtrArray *records, GError **error)
{
    g_autofree char *data = hdStateFormat(records);

    return hdFileWriteAtomic(path, data, strlen(data), 0600, error);
}


/* Members are checked by type: a state file is input like any other. */
static gboolean
hdStateGetString(JsonObject *obj, const char *member, gboolean nullable, char **value,
                 GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);

    *value = NULL;
    if (node && JSON_NODE_HOLDS_NULL(node) && nullable)
        return TRUE;
    if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_STRING) {
        hdErrorSet(error, HD_ERROR_STATE, _("member '%1$s' is missing or not a string"),
                   member);
        return FALSE;
    }
    *value = g_strdup(json_node_get_string(node));
    return TRUE;
}


static gboolean
hdStateGetBool(JsonObject *obj, const char *member, gboolean *value, GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);

    if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_BOOLEAN) {
        hdErrorSet(error, HD_ERROR_STATE, _("member '%1$s' is missing or not a boolean"),
                   member);
        return FALSE;
    }
    *value = json_node_get_boolean(node);
    return TRUE;
}


static gboolean
hdStateGetUInt(JsonObject *obj, const char *member, unsigned int *value, GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);
    gint64 v;

    if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_INT64 ||
        (v = json_node_get_int(node)) < 0 || v > G_MAXUINT) {
        hdErrorSet(error, HD_ERROR_STATE,
                   _("member '%1$s' is missing or not a non-negative integer"), member);
        return FALSE;
    }
    *value = (unsigned int)v;
    return TRUE;
}


static gboolean
hdStateParseDeviceState(const char *str, hdDeviceState *state, GError **error)
{
    if (strcmp(str, "active") == 0) {
        *state = HD_DEVICE_ACTIVE;
    } else if (strcmp(str, "inactive") == 0) {
        *state = HD_DEVICE_INACTIVE;
    } else {
        hdErrorSet(error, HD_ERROR_STATE, _("unknown device state '%1$s'"), str);
        return FALSE;
    }
    return TRUE;
}


static hdDeviceRecord *
hdStateParseRecord(JsonNode *node, gboolean nested, GError **error)
{
    g_autoptr(hdDeviceRecord) rec = g_new0(hdDeviceRecord, 1);
    g_autofree char *addr = NULL;
    g_autofree char *state = NULL;
    JsonObject *obj;
    JsonNode *previous;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        hdErrorSet(error, HD_ERROR_STATE, _("a device record is not an object"));
        return NULL;
    }
    obj = json_node_get_object(node);
    if (!hdStateGetString(obj, "address", FALSE, &addr, error) ||
        !hdPCIAddressParse(addr, &rec->addr, error) ||
        !hdStateGetUInt(obj, "group", &rec->group, error) ||
        !hdStateGetString(obj, "state", FALSE, &state, error) ||
        !hdStateParseDeviceState(state, &rec->state, error) ||
        !hdStateGetString(obj, "domain", TRUE, &rec->domain, error) ||
        !hdStateGetBool(obj, "managed", &rec->managed, error) ||
        !hdStateGetBool(obj, "detached", &rec->detached, error) ||
        !hdStateGetBool(obj, "give_back", &rec->give_back, error) ||
        !hdStateGetString(obj, "original_driver", TRUE, &rec->original_driver, error) ||
        !hdStateGetString(obj, "original_override", TRUE, &rec->original_override, error) ||
        !hdStateGetBool(obj, "in_prepare", &rec->in_prepare, error))
        return NULL;

    if ((rec->state == HD_DEVICE_ACTIVE) != (rec->domain != NULL)) {
        hdErrorSet(error, HD_ERROR_STATE,
                   _("device %1$s: an active device needs a domain, an inactive one none"),
                   addr);
        return NULL;
    }
    previous = json_object_get_member(obj, "previous");
    if (previous && !JSON_NODE_HOLDS_NULL(previous)) {
        if (nested) {
            hdErrorSet(error, HD_ERROR_STATE,
                       _("device %1$s: a previous record cannot have its own"), addr);
            return NULL;
        }
        if (!(rec->previous = hdStateParseRecord(previous, TRUE, error)))
            return NULL;
    }
    return g_steal_pointer(&rec);
}


static gboolean
hdStateCheckHeader(JsonObject *root, GError **error)
{
    g_autofree char *format = NULL;
    unsigned int version;

    if (!hdStateGetString(root, "format", FALSE, &format, error) ||
        !hdStateGetUInt(root, "version", &version, error))
        return FALSE;
    if (strcmp(format, HD_STATE_FORMAT) != 0) {
        hdErrorSet(error, HD_ERROR_STATE, _("not a hostdev state file (format '%1$s')"),
                   format);
        return FALSE;
    }
    if (version != HD_STATE_VERSION) {
        hdErrorSet(error, HD_ERROR_STATE,
                   _("state file version %1$u is not supported (this hostdev reads version %2$d)"),
                   version, HD_STATE_VERSION);
        return FALSE;
    }
    return TRUE;
}


static gboolean
hdStateCheckDuplicate(GPtrArray *records, const hdDeviceRecord *rec, GError **error)
{
    guint i;

    for (i = 0; i < records->len; i++) {
        const hdDeviceRecord *other = g_ptr_array_index(records, i);
        char addr[HD_PCI_ADDRESS_STRLEN];

        if (hdPCIAddressEqual(&other->addr, &rec->addr)) {
            hdErrorSet(error, HD_ERROR_STATE, _("device %1$s is recorded twice"),
                       hdPCIAddressFormat(&rec->addr, addr));
            return FALSE;
        }
    }
    return TRUE;
}


GPtrArray *
hdStateParse(const char *data, gsize len, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GPtrArray) records = hdDeviceRecordListNew();
    g_autoptr(GError) local = NULL;
    JsonNode *root;
    JsonNode *devices;
    JsonArray *array;
    guint i;

    if (len > HD_STATE_MAX_SIZE || len > G_MAXSSIZE) {
        hdErrorSet(error, HD_ERROR_STATE, _("state of %1$" G_GSIZE_FORMAT " bytes is too large"),
                   len);
        return NULL;
    }
    if (!json_parser_load_from_data(parser, data, (gssize)len, &local)) {
        hdErrorSet(error, HD_ERROR_STATE, _("malformed state: %1$s"), local->message);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        hdErrorSet(error, HD_ERROR_STATE, _("malformed state: not a JSON object"));
        return NULL;
    }
    if (!hdStateCheckHeader(json_node_get_object(root), error))
        return NULL;
    devices = json_object_get_member(json_node_get_object(root), "devices");
    if (!devices || !JSON_NODE_HOLDS_ARRAY(devices)) {
        hdErrorSet(error, HD_ERROR_STATE, _("member 'devices' is missing or not an array"));
        return NULL;
    }
    array = json_node_get_array(devices);
    for (i = 0; i < json_array_get_length(array); i++) {
        hdDeviceRecord *rec = hdStateParseRecord(json_array_get_element(array, i), FALSE,
                                                 error);

        if (!rec)
            return NULL;
        if (!hdStateCheckDuplicate(records, rec, error)) {
            hdDeviceRecordFree(rec);
            return NULL;
        }
        g_ptr_array_add(records, rec);
    }
    return g_steal_pointer(&records);
}


GPtrArray *
hdStateLoad(const char *path, GError **error)
{
    g_autofree char *data = NULL;
    gsize len = 0;
    g_autoptr(GError) local = NULL;
    GPtrArray *records;

    if (!g_file_get_contents(path, &data, &len, &local)) {
        if (g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return hdDeviceRecordListNew();
        hdErrorSet(error, HD_ERROR_STATE, _("cannot read state file '%1$s': %2$s"),
                   path, local->message);
        return NULL;
    }
    if (!(records = hdStateParse(data, len, &local))) {
        hdErrorSet(error, HD_ERROR_STATE, _("state file '%1$s': %2$s"), path, local->message);
        return NULL;
    }
    return records;
}


int
hdStateLock(const char *state_dir, GError **error)
{
    g_autofree char *path = g_build_filename(state_dir, "lock", NULL);
    g_autofree char *pid = g_strdup_printf("%d\n", (int)getpid());
    g_auto(hdFd) fd = -1;

    if (g_mkdir_with_parents(state_dir, 0700) < 0) {
        hdErrorSetSystem(error, errno, _("cannot create state directory '%1$s'"), state_dir);
        return -1;
    }
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot open lock file '%1$s'"), path);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        g_autofree char *holder = NULL;

        if (errno != EWOULDBLOCK) {
            hdErrorSetSystem(error, errno, _("cannot lock '%1$s'"), path);
            return -1;
        }
        g_file_get_contents(path, &holder, NULL, NULL);
        hdErrorSet(error, HD_ERROR_STATE,
                   _("state directory '%1$s' is in use by another process (pid %2$s)"),
                   state_dir, holder ? g_strstrip(holder) : "?");
        return -1;
    }
    if (ftruncate(fd, 0) < 0 || write(fd, pid, strlen(pid)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot write lock file '%1$s'"), path);
        return -1;
    }
    return g_steal_fd(&fd);
}
