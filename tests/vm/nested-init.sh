#!/bin/sh
# /init of the nested guest (busybox sh): a Linux guest *inside* the VM,
# booted by a nested QEMU with the VM's own kernel (mkinitramfs.sh
# --nested).  It has no modules and no root file system: it is there so
# that PCI hot-unplug needs a guest's cooperation (the kernel's ACPI or
# PCIe hotplug drivers, built in), as with a real guest.
#
# On its console (the nested QEMU's first serial port) it says
# "hd-nested: ready after S s" (its uptime) once it runs, then
# "hd-nested: pci ADDR=VENDOR:DEVICE..." at start and whenever the list of
# PCI devices changes, so a scenario sees the guest take a device or let
# it go.  Under two levels of TCG every process costs, so it starts as few
# as it can: applets are called through busybox, files read with "read".
# shellcheck shell=sh

bb=/bin/busybox
$bb mkdir -p /proc /sys /dev
$bb mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys

pci_list() {
    list=
    for d in /sys/bus/pci/devices/*; do
        read -r v <"$d/vendor"
        read -r p <"$d/device"
        list="$list ${d##*/}=$v:$p"
    done
}

read -r up _ </proc/uptime
echo "hd-nested: ready after $up s"
last=
while :; do
    pci_list
    if [ "$list" != "$last" ]; then
        echo "hd-nested: pci$list"
        last=$list
    fi
    $bb sleep 2
done
