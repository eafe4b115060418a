/*
 * hdc-xmlfile.c: the XML file a user names, as the UTF-8 text a request
 * carries
 *
 * A request is JSON, so the XML goes as a string: UTF-8.  A file may be in
 * another encoding, which its byte order mark or its XML declaration says
 * (XML 1.0, appendix F); it is converted here, and its declaration then
 * says UTF-8, so that the daemon reads the document the user wrote.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include <glib/gi18n.h>

#include "hdc-xmlfile.h"
#include "hdfile.h"

/* The XML declaration ends within this many bytes, or is not one. */
#define HDC_XML_DECL_MAX 512

typedef struct {
    const char *bytes;
    gsize len;
    const char *encoding;
    gboolean mark;      /* a byte order mark (dropped), not the text itself */
} hdcXmlSignature;

/* Longest first: the UTF-32LE mark begins like UTF-16LE's. */
static const hdcXmlSignature hdcXmlSignatures[] = {
    { "\x00\x00\xfe\xff", 4, "UTF-32BE", TRUE },
    { "\xff\xfe\x00\x00", 4, "UTF-32LE", TRUE },
    { "\x00\x3c\x00\x3f", 4, "UTF-16BE", FALSE },
    { "\x3c\x00\x3f\x00", 4, "UTF-16LE", FALSE },
    { "\xef\xbb\xbf", 3, "UTF-8", TRUE },
    { "\xfe\xff", 2, "UTF-16BE", TRUE },
    { "\xff\xfe", 2, "UTF-16LE", TRUE },
};


static gboolean
hdcXmlIsSpace(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}


/* The value of the encoding pseudo-attribute of the XML declaration that
 * starts @text: its offset and length.  FALSE if there is no declaration or
 * it names no encoding; a malformed one is left to the daemon's parser. */
static gboolean
hdcXmlDeclEncoding(const char *text, gsize len, gsize *start, gsize *value_len)
{
    gsize end;
    gsize i;

    if (len < 6 || memcmp(text, "<?xml", 5) != 0 || !hdcXmlIsSpace(text[5]))
        return FALSE;
    for (end = 5; end + 1 < MIN(len, HDC_XML_DECL_MAX); end++) {
        if (text[end] == '?' && text[end + 1] == '>')
            break;
    }
    if (end + 1 >= MIN(len, HDC_XML_DECL_MAX))
        return FALSE;
    /* name S? = S? "value" or 'value', separated by blanks */
    for (i = 5; i < end;) {
        gsize name;
        gsize name_len;
        char quote;

        while (i < end && hdcXmlIsSpace(text[i]))
            i++;
        name = i;
        while (i < end && g_ascii_isalpha(text[i]))
            i++;
        name_len = i - name;
        while (i < end && hdcXmlIsSpace(text[i]))
            i++;
        if (name_len == 0 || i >= end || text[i++] != '=')
            return FALSE;
        while (i < end && hdcXmlIsSpace(text[i]))
            i++;
        if (i >= end || (text[i] != '"' && text[i] != '\''))
            return FALSE;
        quote = text[i++];
        *start = i;
        while (i < end && text[i] != quote)
            i++;
        if (i >= end)
            return FALSE;
        *value_len = i - *start;
        i++;
        if (name_len == strlen("encoding") && memcmp(text + name, "encoding", name_len) == 0)
            return *value_len > 0;
    }
    return FALSE;
}


/* UTF-16 and UTF-32 cannot be told from their declaration alone: their
 * first bytes (hdcXmlSignatures) say so, or the declaration is wrong. */
static gboolean
hdcXmlIsWideEncoding(const char *encoding)
{
    return g_ascii_strncasecmp(encoding, "UTF-16", 6) == 0 ||
        g_ascii_strncasecmp(encoding, "UTF-32", 6) == 0 ||
        g_ascii_strncasecmp(encoding, "UCS-", 4) == 0 ||
        g_ascii_strncasecmp(encoding, "ISO-10646-UCS", 13) == 0;
}


static gboolean
hdcXmlIsUtf8(const char *encoding)
{
    return g_ascii_strcasecmp(encoding, "UTF-8") == 0 || g_ascii_strcasecmp(encoding, "UTF8") == 0;
}


/* A request string ends at a NUL: what follows would be lost. */
static void
hdcXmlNulError(const char *path, GError **error)
{
    g_set_error(error, G_CONVERT_ERROR, G_CONVERT_ERROR_ILLEGAL_SEQUENCE,
                _("%1$s: contains a NUL character"), path);
}


/* @data (from @path) in @encoding, as UTF-8 text. */
static char *
hdcXmlConvert(const char *path, const char *data, gsize len, const char *encoding,
              gsize *out_len, GError **error)
{
    g_autoptr(GError) local = NULL;
    GIConv conv;
    char *text;

    if (hdcXmlIsUtf8(encoding)) {
        const char *bad = NULL;

        if (memchr(data, '\0', len)) {
            hdcXmlNulError(path, error);
            return NULL;
        }
        if (!g_utf8_validate_len(data, len, &bad)) {
            g_set_error(error, G_CONVERT_ERROR, G_CONVERT_ERROR_ILLEGAL_SEQUENCE,
                        _("%1$s: not valid UTF-8 at byte %2$" G_GSIZE_FORMAT
                          " (declare the file's encoding in its <?xml ... ?> line)"),
                        path, (gsize)(bad - data));
            return NULL;
        }
        *out_len = len;
        return g_strndup(data, len);
    }
    if ((conv = g_iconv_open("UTF-8", encoding)) == (GIConv)-1) {
        g_set_error(error, G_CONVERT_ERROR, G_CONVERT_ERROR_NO_CONVERSION,
                    _("%1$s: unknown encoding '%2$s' in its <?xml ... ?> line"), path, encoding);
        return NULL;
    }
    text = g_convert_with_iconv(data, len, conv, NULL, out_len, &local);
    g_iconv_close(conv);
    if (!text) {
        g_set_error(error, G_CONVERT_ERROR, local->code,
                    _("%1$s: not valid %2$s text: %3$s"), path, encoding, local->message);
        return NULL;
    }
    return text;
}


char *
hdcXmlFileRead(const char *path, gsize max, GError **error)
{
    g_autofree char *data = NULL;
    g_autofree char *text = NULL;
    g_autofree char *declared = NULL;
    const char *encoding = NULL;
    gsize skip = 0;
    gsize len = 0;
    gsize text_len = 0;
    gsize start = 0;
    gsize value_len = 0;
    guint i;

    if (!hdFileReadRegular(path, max, &data, &len, error))
        return NULL;

    /* Step 1: the encoding, from the first bytes or the declaration. */
    for (i = 0; i < G_N_ELEMENTS(hdcXmlSignatures) && !encoding; i++) {
        const hdcXmlSignature *sig = &hdcXmlSignatures[i];

        if (len >= sig->len && memcmp(data, sig->bytes, sig->len) == 0) {
            encoding = sig->encoding;
            skip = sig->mark ? sig->len : 0;
        }
    }
    if (!encoding && hdcXmlDeclEncoding(data, len, &start, &value_len)) {
        declared = g_strndup(data + start, value_len);
        if (hdcXmlIsWideEncoding(declared)) {
            g_set_error(error, G_CONVERT_ERROR, G_CONVERT_ERROR_ILLEGAL_SEQUENCE,
                        _("%1$s: declares encoding '%2$s', but its bytes are not in it "
                          "(no byte order mark)"), path, declared);
            return NULL;
        }
        encoding = declared;
    }

    /* Step 2: UTF-8 text, with no NUL in it (a request string ends there). */
    if (!(text = hdcXmlConvert(path, data + skip, len - skip, encoding ? encoding : "UTF-8",
                               &text_len, error)))
        return NULL;
    if (memchr(text, '\0', text_len)) {
        hdcXmlNulError(path, error);
        return NULL;
    }
    if (text_len > max) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    _("%1$s: larger than %2$" G_GSIZE_FORMAT " bytes once in UTF-8"),
                    path, max);
        return NULL;
    }

    /* Step 3: the declaration says what the text now is. */
    if (!hdcXmlDeclEncoding(text, text_len, &start, &value_len))
        return g_steal_pointer(&text);
    return g_strdup_printf("%.*sUTF-8%s", (int)start, text, text + start + value_len);
}
