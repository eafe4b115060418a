/*
 * selinux-shim.h: what the tests know about the libselinux shim
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

/* The label of a file nobody labelled. */
#define HD_SELINUX_SHIM_DEFAULT "system_u:object_r:vfio_device_t:s0"
