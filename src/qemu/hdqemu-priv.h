/*
 * hdqemu-priv.h: shared between the QMP client and the capability probe
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "hostdev/qemu.h"

/* The bytes @qmp's input buffer holds allocated (the tests check that a
 * connection keeps no large buffer once a large message went through). */
gsize hdQmpGetInputAllocated(hdQmp *qmp);

/* @qmp takes @caps. */
void hdQmpSetCaps(hdQmp *qmp, hdQemuCaps *caps);

/* Members of a message from QEMU, NULL (or @def) when absent or of another
 * type: a monitor's garbage must not trip json-glib's assertions. */
JsonObject *hdQmpJsonObject(JsonObject *obj, const char *name);
JsonArray *hdQmpJsonArray(JsonObject *obj, const char *name);
const char *hdQmpJsonString(JsonObject *obj, const char *name);
gint64 hdQmpJsonInt(JsonObject *obj, const char *name, gint64 def);
