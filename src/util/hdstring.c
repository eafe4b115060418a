/*
 * hdstring.c: strings from outside (requests, XML) checked as text
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "hdinternal.h"


gboolean
hdStringIsText(const char *s, gssize len, gboolean layout, gunichar *bad)
{
    const char *end;
    const char *p;

    if (!g_utf8_validate(s, len, &end) || (len >= 0 && end != s + len)) {
        *bad = (gunichar)-1;
        return FALSE;
    }
    for (p = s; p < end; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);

        if (layout && (c == '\t' || c == '\n' || c == '\r'))
            continue;
        if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
            *bad = c;
            return FALSE;
        }
    }
    return TRUE;
}
