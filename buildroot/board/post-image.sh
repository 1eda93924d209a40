#!/bin/sh
# BR2_ROOTFS_POST_IMAGE_SCRIPT: $1 = BINARIES_DIR, $2 = board name (BR2_ROOTFS_POST_SCRIPT_ARGS).
# Same layout as the Debian-built image (image/build.sh): p1 PGBOOT vfat, p2 pg-root ext4 (ro),
# p3 pg-data ext4 (grown on first boot by the shared overlay's data-mount).
set -eu
board=$2
cfg="$BR2_EXTERNAL_POCKETGATE_PATH/board/genimage-rpi.cfg"
# Buildroot's kernel has the storage drivers built in, so no initramfs: drop that line, and
# name the root partition by device (the kernel alone cannot resolve LABEL=).
sed '/^initramfs /d' "$BR2_EXTERNAL_POCKETGATE_PATH/../board/$board/config.txt" > "$1/config.txt"
cp "$1/Image" "$1/vmlinuz"
echo "console=tty1 root=/dev/mmcblk0p2 rootfstype=ext4 ro rootwait loglevel=4 panic=5" > "$1/cmdline.txt"
tmp=$(mktemp -d)
genimage --rootpath "$tmp" --tmppath "$BUILD_DIR/genimage.tmp" --inputpath "$1" --outputpath "$1" --config "$cfg"
rm -rf "$tmp"
