/*
 * hdstate.h: the manager's device records and their durable form
 *
 * The state directory holds "state.json" (the records, versioned, written
 * atomically before every change to the host) and "lock" (flock'ed by the
 * one process that owns the directory).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "hostdev/manager.h"

#define HD_STATE_FORMAT "hostdev-state"
#define HD_STATE_VERSION 1

/* A device record: owned by the manager's list. */
typedef struct _hdDeviceRecord hdDeviceRecord;
struct _hdDeviceRecord {
    hdPCIAddress addr;
    unsigned int group;
    hdDeviceState state;       /* INACTIVE or ACTIVE */
    char *domain;              /* ACTIVE only */
    gboolean managed;
    /* hostdev moved it to vfio-pci, so it must go back to original_driver */
    gboolean detached;
    /* give it back as soon as its group is free (FALSE: nodedev-detach'ed,
     * stays on vfio-pci until reattached) */
    gboolean give_back;
    char *original_driver;     /* NULL: it had none */
    char *original_override;   /* driver_override before we changed it */
    /* Set while a prepare that created or changed this record is in flight:
     * a crash then rolls the record back to `previous` (NULL: untracked). */
    gboolean in_prepare;
    hdDeviceRecord *previous;
};

hdDeviceRecord *hdDeviceRecordNew(const hdPCIAddress *addr, unsigned int group);
hdDeviceRecord *hdDeviceRecordCopy(const hdDeviceRecord *rec);
void hdDeviceRecordFree(hdDeviceRecord *rec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdDeviceRecord, hdDeviceRecordFree)

/* A new empty list of records. */
GPtrArray *hdDeviceRecordListNew(void);
GPtrArray *hdDeviceRecordListCopy(GPtrArray *records);

/* Records from @path; an absent file is an empty list.  A file of another
 * format or a newer version is refused rather than misread. */
GPtrArray *hdStateLoad(const char *path, GError **error);
gboolean hdStateSave(const char *path, GPtrArray *records, GError **error);

/* Parse a state document (exposed for the fuzzers and tests). */
GPtrArray *hdStateParse(const char *data, gsize len, GError **error);
char *hdStateFormat(GPtrArray *records);

/* Take the directory's lock; returns the lock fd, or -1 with @error naming
 * the pid that holds it. */
int hdStateLock(const char *state_dir, GError **error);
