/*
 * error.h: hostdev error reporting
 *
 * Errors are GErrors.  Failures of system calls use the HD_SYSTEM_ERROR
 * domain with the errno value as code, so callers can still tell EBUSY
 * from ENOENT; everything else uses HD_ERROR with an hdErrorCode.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define HD_ERROR (hdErrorQuark())
#define HD_SYSTEM_ERROR (hdSystemErrorQuark())

typedef enum {
    HD_ERROR_INTERNAL = 1,
    HD_ERROR_INVALID_ARG,       /* malformed input: address, XML, request */
    HD_ERROR_NOT_FOUND,         /* no such device, group, domain */
    HD_ERROR_IN_USE,            /* owned by another domain or process */
    HD_ERROR_NOT_VIABLE,        /* the action would make a group non-viable */
    HD_ERROR_OPERATION_FAILED,  /* the host refused: probe, reset, bind */
    HD_ERROR_TIMEOUT,
    HD_ERROR_STATE,             /* durable state unreadable or locked */
    HD_ERROR_PERMISSION,        /* not allowed: another user's domain or process */
} hdErrorCode;

GQuark hdErrorQuark(void);
GQuark hdSystemErrorQuark(void);

void hdErrorSet(GError **error, hdErrorCode code, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/* Sets an HD_SYSTEM_ERROR whose code is @errnum; the message is @fmt
 * followed by the description of @errnum. */
void hdErrorSetSystem(GError **error, int errnum, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/* The errno carried by @error, or 0 if it is not a system error. */
int hdErrorErrno(const GError *error);

G_END_DECLS
