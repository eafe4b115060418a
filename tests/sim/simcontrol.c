/*
 * simcontrol.c: the commands of .sim/ctl (docs/simhost.rst)
 *
 * A command is parsed and checked completely before anything changes, so a
 * malformed one changes nothing.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <stdio.h>
#include <string.h>
#include <linux/if_ether.h>

#include "simmodel-priv.h"

#define SIM_CONTROL_ERROR (g_quark_from_static_string("sim-control-error"))


/* The words of one command: split on blanks, the trailing newline gone. */
static GStrv
simControlWords(const char *buf, gsize len)
{
    g_autofree char *line = g_strndup(buf, len);
    g_auto(GStrv) parts = NULL;
    GPtrArray *words = g_ptr_array_new();
    guint i;

    g_strchomp(line);
    parts = g_strsplit_set(line, " \t", -1);
    for (i = 0; parts[i]; i++) {
        if (*parts[i])
            g_ptr_array_add(words, g_strdup(parts[i]));
    }
    g_ptr_array_add(words, NULL);
    return (GStrv) g_ptr_array_free(words, FALSE);
}


static gboolean
simControlFault(simModel *model, GStrv words, GError **error)
{
    guint count = g_strv_length(words);
    gboolean probe = count >= 3 && strcmp(words[2], "probe") == 0;
    simDevice *dev;
    simFault fault;

    /* "fault ADDR probe MODE DRIVER": only probes of DRIVER. */
    if (count != 4 && !(count == 5 && probe)) {
        g_set_error(error, SIM_CONTROL_ERROR, 0,
                    "usage: fault ADDR probe fail|hang|ok [DRIVER], "
                    "fault ADDR reset fail|hang|ok, fault ADDR release hang|ok, "
                    "fault ADDR vf fail|ok");
        return FALSE;
    }
    if (!(dev = simModelFindDevice(model, words[1]))) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "fault: no device %s", words[1]);
        return FALSE;
    }
    if (count == 5 && !simModelKnowsDriver(model, words[4])) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "fault %s probe: no driver %s",
                    words[1], words[4]);
        return FALSE;
    }
    if (strcmp(words[3], "ok") == 0) {
        fault = SIM_FAULT_OK;
    } else if (strcmp(words[3], "fail") == 0 && strcmp(words[2], "release") != 0) {
        fault = SIM_FAULT_FAIL;
    } else if (strcmp(words[3], "hang") == 0 && strcmp(words[2], "vf") != 0) {
        fault = SIM_FAULT_HANG;
    } else {
        g_set_error(error, SIM_CONTROL_ERROR, 0,
                    "fault %s %s: unknown mode '%s'", words[1], words[2], words[3]);
        return FALSE;
    }

    if (probe) {
        dev->probe_fault = fault;
        g_free(dev->probe_fault_driver);
        dev->probe_fault_driver = fault != SIM_FAULT_OK ? g_strdup(words[4]) : NULL;
    } else if (strcmp(words[2], "reset") == 0) {
        dev->reset_fault = fault;
    } else if (strcmp(words[2], "release") == 0) {
        dev->release_hang = fault == SIM_FAULT_HANG;
    } else if (strcmp(words[2], "vf") == 0 && dev->physfn) {
        dev->vf_fault = fault;
    } else if (strcmp(words[2], "vf") == 0) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "fault %s vf: not an SR-IOV VF", words[1]);
        return FALSE;
    } else {
        g_set_error(error, SIM_CONTROL_ERROR, 0,
                    "fault %s: unknown operation '%s'", words[1], words[2]);
        return FALSE;
    }
    return TRUE;
}


static void
simControlSetCost(simDevice *dev, const char *name, guint value)
{
    if (strcmp(name, "reset_ms") == 0)
        dev->reset_ms = value;
    else if (strcmp(name, "probe_ms") == 0)
        dev->probe_ms = value;
    else
        dev->release_ms = value;
}


static gboolean
simControlCost(simModel *model, GStrv words, GError **error)
{
    g_autoptr(GError) local = NULL;
    simDevice *dev = NULL;
    guint64 value;
    guint i;

    if (g_strv_length(words) != 4) {
        g_set_error(error, SIM_CONTROL_ERROR, 0,
                    "usage: cost ADDR|all reset_ms|probe_ms|release_ms N");
        return FALSE;
    }
    if (strcmp(words[1], "all") != 0 &&
        !(dev = simModelFindDevice(model, words[1]))) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "cost: no device %s", words[1]);
        return FALSE;
    }
    if (strcmp(words[2], "reset_ms") != 0 && strcmp(words[2], "probe_ms") != 0 &&
        strcmp(words[2], "release_ms") != 0) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "cost %s: unknown cost '%s'",
                    words[1], words[2]);
        return FALSE;
    }
    if (!g_ascii_string_to_unsigned(words[3], 10, 0, SIM_COST_MAX_MS, &value, &local)) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "cost %s %s: %s",
                    words[1], words[2], local->message);
        return FALSE;
    }

    if (dev) {
        simControlSetCost(dev, words[2], value);
        return TRUE;
    }
    for (i = 0; i < model->devices->len; i++)
        simControlSetCost(g_ptr_array_index(model->devices, i), words[2], value);
    return TRUE;
}


static gboolean
simControlSerialized(simModel *model, GStrv words, GError **error)
{
    if (g_strv_length(words) != 2 ||
        (strcmp(words[1], "on") != 0 && strcmp(words[1], "off") != 0)) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "usage: serialized on|off");
        return FALSE;
    }
    model->serialized = strcmp(words[1], "on") == 0;
    g_cond_broadcast(&model->cond);
    return TRUE;
}


/* "vf ADDR mac MAC" or "vf ADDR vlan N [qos Q]": what `ip link set PF vf
 * N ...` does for the VF at ADDR, through its PF's driver. */
static gboolean
simControlVF(simModel *model, GStrv words, GError **error)
{
    guint count = g_strv_length(words);
    guint8 mac[SIM_MAC_LEN];
    guint64 vlan = 0;
    guint64 qos = 0;
    simDevice *dev;
    guint index;
    int ret;

    if (!(count == 4 && (strcmp(words[2], "mac") == 0 || strcmp(words[2], "vlan") == 0)) &&
        !(count == 6 && strcmp(words[2], "vlan") == 0 && strcmp(words[4], "qos") == 0)) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "usage: vf ADDR mac MAC, vf ADDR vlan N [qos Q]");
        return FALSE;
    }
    if (!(dev = simModelFindDevice(model, words[1])) || !dev->physfn) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "vf: %s is not an SR-IOV VF", words[1]);
        return FALSE;
    }
    if (strcmp(words[2], "mac") == 0 &&
        sscanf(words[3], "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx", &mac[0], &mac[1], &mac[2],
               &mac[3], &mac[4], &mac[5]) != SIM_MAC_LEN) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "vf %s mac: invalid address '%s'",
                    words[1], words[3]);
        return FALSE;
    }
    if (strcmp(words[2], "vlan") == 0 &&
        (!g_ascii_string_to_unsigned(words[3], 10, 0, G_MAXUINT, &vlan, NULL) ||
         (count == 6 && !g_ascii_string_to_unsigned(words[5], 10, 0, G_MAXUINT, &qos, NULL)))) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "vf %s vlan: not a number", words[1]);
        return FALSE;
    }
    g_ptr_array_find(dev->physfn->virtfns, dev, &index);
    ret = strcmp(words[2], "mac") == 0 ?
        simModelSetVFMac(model, dev->physfn, index, mac, 0) :
        simModelSetVFVlan(model, dev->physfn, index, vlan, qos, ETH_P_8021Q, 0);
    if (ret < 0) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "vf %s: %s", words[1], g_strerror(-ret));
        return FALSE;
    }
    return TRUE;
}


static gboolean
simControlNoArgs(GStrv words, GError **error)
{
    if (g_strv_length(words) != 1) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "%s takes no arguments", words[0]);
        return FALSE;
    }
    return TRUE;
}


static gboolean
simControlRun(simModel *model, GStrv words, GError **error)
{
    if (!words[0]) {
        g_set_error(error, SIM_CONTROL_ERROR, 0, "empty command");
        return FALSE;
    }
    if (strcmp(words[0], "fault") == 0)
        return simControlFault(model, words, error);
    if (strcmp(words[0], "cost") == 0)
        return simControlCost(model, words, error);
    if (strcmp(words[0], "serialized") == 0)
        return simControlSerialized(model, words, error);
    if (strcmp(words[0], "vf") == 0)
        return simControlVF(model, words, error);
    if (strcmp(words[0], "unhang") == 0) {
        if (!simControlNoArgs(words, error))
            return FALSE;
        model->unhang_generation++;
        g_cond_broadcast(&model->cond);
        return TRUE;
    }
    if (strcmp(words[0], "clear-events") == 0) {
        if (!simControlNoArgs(words, error))
            return FALSE;
        g_string_truncate(model->events, 0);
        return TRUE;
    }
    g_set_error(error, SIM_CONTROL_ERROR, 0, "unknown command '%s'", words[0]);
    return FALSE;
}


gboolean
simModelControl(simModel *model, const char *buf, gsize len, GError **error)
{
    g_auto(GStrv) words = simControlWords(buf, len);
    gboolean ok;

    g_mutex_lock(&model->lock);
    ok = simControlRun(model, words, error);
    g_mutex_unlock(&model->lock);
    return ok;
}
