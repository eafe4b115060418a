/*
 * hderror.c: hostdev error reporting
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <unistd.h>

#include "hdinternal.h"

GQuark
hdErrorQuark(void)
{
    return g_quark_from_static_string("hd-error-quark");
}


GQuark
hdSystemErrorQuark(void)
{
    return g_quark_from_static_string("hd-system-error-quark");
}


void
hdErrorSet(GError **error, hdErrorCode code, const char *fmt, ...)
{
    va_list ap;

    if (!error)
        return;
    va_start(ap, fmt);
    *error = g_error_new_valist(HD_ERROR, code, fmt, ap);
    va_end(ap);
}


void
hdErrorSetSystem(GError **error, int errnum, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *what = NULL;

    if (!error)
        return;
    va_start(ap, fmt);
    what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* TRANSLATORS: %1$s says what failed, %2$s is the system's reason */
    *error = g_error_new(HD_SYSTEM_ERROR, errnum, _("%1$s: %2$s"),
                         what, g_strerror(errnum));
}


int
hdErrorErrno(const GError *error)
{
    if (error && error->domain == HD_SYSTEM_ERROR)
        return error->code;
    return 0;
}
