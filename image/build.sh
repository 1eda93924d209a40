#!/usr/bin/env bash
# Build image/out/pocketgate-BOARD.img.xz without root or loop devices (appliance.md §2.4,
# Appendix B): unpack Debian arm64 packages with `dpkg-deb -x`, add our static binary and the
# overlays, make the filesystems with mke2fs -d / mkfs.vfat -C + mtools, and write them into an
# MBR disk image at fixed offsets with dd.
# Usage: image/build.sh BOARD [BINARY]   (BINARY defaults to the `just cross` release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
board=${1:?usage: build.sh BOARD [BINARY]}
bdir=$repo/board/$board
[ -f "$bdir/board.env" ] || { echo "build: no board/$board/board.env" >&2; exit 2; }
# board.env sets: ARCH, BOOT_STYLE (uefi|rpi), CMDLINE, DTBS, RPI_FIRMWARE (files from raspi-firmware)
# shellcheck disable=SC1091
. "$bdir/board.env"
[ "$BOOT_STYLE" = unsupported ] && { echo "build: $board: $UNSUPPORTED" >&2; exit 3; }
bin=${2:-$repo/target/aarch64-unknown-linux-gnu/release/pocketgate}
[ -x "$bin" ] || { echo "build: $bin missing (run: just cross)" >&2; exit 2; }
file -b "$bin" | grep -q 'statically linked' || { echo "build: $bin is not static" >&2; exit 2; }
work=$here/scratch/$board; out=$here/out
rm -rf "$work"; mkdir -p "$work" "$out"
t0=$(date +%s.%N)

pkgs=(${EXTRA_PKGS:-} linux-image-arm64 busybox-static hostapd wpasupplicant iw dnsmasq-base wireless-regdb
      ca-certificates sqlite3 e2fsprogs fdisk util-linux chrony)
[ "$BOOT_STYLE" = uefi ] && pkgs+=(systemd-boot-efi)
[ "$BOOT_STYLE" = rpi ] && pkgs+=(raspi-firmware firmware-brcm80211)
mapfile -t debs < <("$here/fetch.sh" "$ARCH" "${pkgs[@]}")

# Packages whose files the appliance does not need (maintainer-script machinery, perl, udev).
skip='^(perl|perl-base|perl-modules-.*|libperl.*|dpkg|debconf|tar|coreutils|initramfs-tools.*|klibc-utils|libklibc|linux-base|udev|usrmerge|adduser|passwd|libpam.*|openssl|cpio|lib.*-perl|init-system-helpers|libsemanage.*|libsepol2|libdb5.3|libgdbm.*|kmod|raspi-firmware|firmware-brcm80211|systemd-boot-efi|linux-image-.*|dosfstools|tzdata|iproute2|ucf|sensible-utils)$'
root=$work/rootfs; ext=$work/extract
mkdir -p "$root" "$ext"
for d in "${debs[@]}"; do
    p=$(basename "$d"); p=${p%%_*}
    if [[ $p =~ $skip ]]; then dpkg-deb -x "$d" "$ext/$p"; else dpkg-deb -x "$d" "$root"; fi
done
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,bug,bash-completion} "$root"/etc/init.d/*

# BusyBox provides init, sh and the small tools; links for every applet not already a program.
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,var,data,root,boot}
bb=$root/bin/busybox
for a in $(qemu-aarch64-static "$bb" --list-full); do
    [ -e "$root/$a" ] || [ -L "$root/$a" ] || ln -s /bin/busybox "$root/$a"
done
ln -sf /bin/busybox "$root/sbin/init"
# wireless-regdb's postinst would make these (appliance.md §2.6 pitfall 2).
ln -sf regulatory.db-debian "$root/lib/firmware/regulatory.db"
ln -sf regulatory.db.p7s-debian "$root/lib/firmware/regulatory.db.p7s"

# Kernel modules: the subsets the appliance uses, with modules.dep from the host's depmod.
kpkg=$(ls -d "$ext"/linux-image-*-arm64 | head -1)
kver=$(basename "$(ls -d "$kpkg"/lib/modules/*)")
mods=$kpkg/lib/modules/$kver
mkdir -p "$root/lib/modules/$kver"
cp "$mods"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
(cd "$mods" && find kernel/crypto kernel/arch kernel/lib kernel/fs/{ext4,jbd2,fat,nls,mbcache.ko} \
     kernel/net/{wireless,mac80211,rfkill,packet} kernel/drivers/{virtio,mmc,watchdog,char/hw_random,usb,leds,tty,net/wireless/broadcom,net/wireless/virtual,net/usb} \
     kernel/drivers/block/virtio_blk.ko kernel/drivers/net/{virtio_net.ko,net_failover.ko,wireless/mac80211_hwsim.ko} kernel/net/core/failover.ko \
     kernel/drivers/scsi kernel/drivers/i2c kernel/drivers/gpio kernel/drivers/pwm \
     -name '*.ko*' 2>/dev/null || true) | (cd "$mods" && cpio -pdm --quiet "$root/lib/modules/$kver")
depmod -b "$root" "$kver"

# Our files: shared overlay, board overlay, the binary, default Temprs.
cp -a "$here/rootfs/." "$root/"
[ -d "$bdir/rootfs-overlay" ] && cp -a "$bdir/rootfs-overlay/." "$root/"
install -m 0755 "$bin" "$root/usr/bin/pocketgate"
# A dev-profile binary (the CI smoke) carries ~130 MB of debug info: the image gets it stripped.
aarch64-linux-gnu-strip "$root/usr/bin/pocketgate" 2>/dev/null || true
mkdir -p "$root/usr/share/pocketgate"
cp -a "$repo/config/temprs" "$root/usr/share/pocketgate/temprs"
echo "$board $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)" > "$root/etc/pocketgate-release"

# initramfs: busybox + the storage modules (and their dependencies) + init.
ird=$work/initramfs
mkdir -p "$ird"/{bin,proc,sys,dev,newroot,etc,lib/modules/$kver}
cp "$bb" "$ird/bin/busybox"
cp "$here/initramfs/init" "$ird/init"; cp "$here/initramfs/modules" "$ird/etc/modules"
cp "$mods"/modules.{order,builtin,builtin.modinfo} "$ird/lib/modules/$kver/"
need=$(for m in $(cat "$here/initramfs/modules"); do
    modprobe -d "$root" -S "$kver" --show-depends "$m" 2>/dev/null | awk '/^insmod/{print $2}'; done | sort -u)
for f in $need; do mkdir -p "$ird$(dirname "${f#"$root"}")"; cp "$f" "$ird${f#"$root"}"; done
depmod -b "$ird" "$kver"
(cd "$ird" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -9) > "$work/initrd.img"

# Boot partition: kernel, initrd, and either UEFI (systemd-boot) or the Pi firmware.
bootdir=$work/boot; mkdir -p "$bootdir"
cp "$kpkg/boot/vmlinuz-$kver" "$bootdir/vmlinuz"; cp "$work/initrd.img" "$bootdir/initrd.img"
echo "$CMDLINE" > "$bootdir/cmdline.txt"
if [ "$BOOT_STYLE" = uefi ]; then
    sd=$ext/systemd-boot-efi/usr/lib/systemd/boot/efi/systemd-bootaa64.efi
    mkdir -p "$bootdir"/EFI/BOOT "$bootdir"/loader/entries
    cp "$sd" "$bootdir/EFI/BOOT/BOOTAA64.EFI"
    printf 'default pocketgate.conf\ntimeout 0\n' > "$bootdir/loader/loader.conf"
    printf 'title pocketgate\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$CMDLINE" > "$bootdir/loader/entries/pocketgate.conf"
else
    fw=$ext/raspi-firmware/usr/lib/raspi-firmware
    for f in $RPI_FIRMWARE; do cp "$fw/$f" "$bootdir/"; done
    for d in $DTBS; do cp "$kpkg/usr/lib/linux-image-$kver/$d" "$bootdir/"; done
    command -v fdtput >/dev/null || { echo "build: fdtput missing (apt-get install device-tree-compiler)" >&2; exit 2; }
    for d in $DTBS; do "$here/rpi-dtb.sh" "$bootdir/${d##*/}" >/dev/null; done
    cp "$bdir/config.txt" "$bootdir/config.txt"
    mkdir -p "$root/lib/firmware/brcm"
    cp -a "$ext"/firmware-brcm80211/lib/firmware/brcm/brcmfmac434* "$root/lib/firmware/brcm/" 2>/dev/null || true
fi

# Filesystems. Ownership inside the image is root's whatever user builds (appliance.md §2.4).
boot_mb=${BOOT_MB:-128}; data_mb=${DATA_MB:-64}
root_mb=$(( $(du -sm "$root" | cut -f1) * 115 / 100 + 16 ))
mkfs.vfat -n PGBOOT -C "$work/boot.vfat" $((boot_mb * 1024)) >/dev/null
mcopy -s -i "$work/boot.vfat" "$bootdir"/* ::
fr=""; [ "$(id -u)" -ne 0 ] && fr=fakeroot
$fr sh -c "chown -R 0:0 '$root' 2>/dev/null; chown -R 1000:1000 '$root/data' 2>/dev/null;
  mke2fs -q -t ext4 -L pg-root -d '$root' -E root_owner=0:0 -O ^has_journal -m 0 '$work/root.ext4' ${root_mb}M"
mke2fs -q -t ext4 -L pg-data -m 1 "$work/data.ext4" ${data_mb}M >/dev/null

# MBR: p1 boot (FAT32 LBA, 0x0c, bootable) at 4 MiB, p2 root, p3 data — the Pi firmware reads
# the first FAT partition; UEFI finds EFI/BOOT/BOOTAA64.EFI on it too.
s1=8192; n1=$((boot_mb * 2048)); s2=$((s1 + n1)); n2=$((root_mb * 2048)); s3=$((s2 + n2)); n3=$((data_mb * 2048))
img=$work/pocketgate-$board.img
truncate -s $(( (s3 + n3) * 512 )) "$img"
printf 'label: dos\nunit: sectors\n\nstart=%s, size=%s, type=c, bootable\nstart=%s, size=%s, type=83\nstart=%s, size=%s, type=83\n' \
    $s1 $n1 $s2 $n2 $s3 $n3 | sfdisk -q "$img"
dd if="$work/boot.vfat" of="$img" bs=512 seek=$s1 conv=notrunc status=none
dd if="$work/root.ext4" of="$img" bs=512 seek=$s2 conv=notrunc status=none
dd if="$work/data.ext4" of="$img" bs=512 seek=$s3 conv=notrunc status=none
t1=$(date +%s.%N)
# IMAGE_XZ=0 keeps the raw image instead (the boot test and check-boards use it).
rm -f "$out/pocketgate-$board.img" "$out/pocketgate-$board.img.xz"
if [ "${IMAGE_XZ:-1}" = 1 ]; then
    xz -T0 -3 -c "$img" > "$out/pocketgate-$board.img.xz.tmp" && mv "$out/pocketgate-$board.img.xz.tmp" "$out/pocketgate-$board.img.xz"
else
    mv "$img" "$out/pocketgate-$board.img"
fi
rm -rf "$work"   # the staging tree is ~1 GiB
t2=$(date +%s.%N)
echo "image: $out/pocketgate-$board.img$([ "${IMAGE_XZ:-1}" = 1 ] && echo .xz) ($(( (s3 + n3) / 2048 )) MiB; root ${root_mb} MiB)" \
    "assembled in $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s, xz $(awk "BEGIN{printf \"%.1f\", $t2 - $t1}") s"
[ "${IMAGE_XZ:-1}" = 1 ] && ls -l "$out/pocketgate-$board.img.xz"
exit 0
