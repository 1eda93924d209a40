#!/usr/bin/env bash
# Checks a Pi image's partition table and boot files without booting it (no Pi in CI):
# MBR with p1 FAT32-LBA bootable at 4 MiB labelled PGBOOT, p2 ext4 pg-root, p3 ext4 pg-data;
# the boot partition holds the firmware, config.txt naming our kernel/initramfs with the UART on,
# the kernel (arm64 Image), the initrd, the board's DTBs, and cmdline.txt whose root= names p2.
# Usage: image/check-boards.sh BOARD...   (builds a missing image with the release binary)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
fail=0; passed=0
bad() { echo "check-boards: $board: $*"; fail=$((fail + 1)); }
for board in "$@"; do
    before=$fail
    img=$here/out/pocketgate-$board.img
    mkdir -p "$here/scratch"
    [ -f "$img" ] || IMAGE_XZ=0 "$here/build.sh" "$board" >/dev/null
    # shellcheck disable=SC1090
    . "$repo/board/$board/board.env"
    t=$(sfdisk -d "$img")
    p() { echo "$t" | grep "^$img$1 " ; }
    p 1 | grep -q 'start= *8192,.*type=c, bootable' || bad "p1 is not a bootable FAT32-LBA partition at 4 MiB: $(p 1)"
    p 2 | grep -q 'type=83' || bad "p2 is not a Linux partition"
    p 3 | grep -q 'type=83' || bad "p3 is not a Linux partition"
    off() { p "$1" | sed -n 's/.*start= *\([0-9]*\),.*/\1/p'; }
    size() { p "$1" | sed -n 's/.*size= *\([0-9]*\),.*/\1/p'; }
    dd if="$img" of="$here/scratch/check-p2" bs=512 skip="$(off 2)" count="$(size 2)" status=none
    dd if="$img" of="$here/scratch/check-p3" bs=512 skip="$(off 3)" count="$(size 3)" status=none
    [ "$(e2label "$here/scratch/check-p2")" = pg-root ] || bad "p2 label is not pg-root"
    [ "$(e2label "$here/scratch/check-p3")" = pg-data ] || bad "p3 label is not pg-data"
    debugfs -R "stat /usr/bin/pocketgate" "$here/scratch/check-p2" 2>/dev/null | grep -q 'User: *0' || bad "/usr/bin/pocketgate missing or not root-owned"
    fat="$img@@$(( $(off 1) * 512 ))"
    mlabel -s -i "$fat" :: | grep -q PGBOOT || bad "p1 label is not PGBOOT"
    files=$(mdir -b -i "$fat" ::/)
    for f in vmlinuz initrd.img config.txt cmdline.txt $RPI_FIRMWARE; do
        echo "$files" | grep -q "^::/$f$" || bad "boot partition lacks $f"
    done
    for d in $DTBS; do
        dtb=$here/scratch/check.dtb
        mcopy -n -i "$fat" "::/${d##*/}" "$dtb" 2>/dev/null || { bad "boot partition lacks ${d##*/}"; continue; }
        # RS-232 HAT: the PL011 (uart0) is routed to GPIO 14/15 and Bluetooth is off (rpi-dtb.sh).
        g=$(fdtget -l "$dtb" /soc | grep -m1 '^gpio@')
        [ "$(fdtget "$dtb" /soc/serial@7e201000 pinctrl-0)" = "$(fdtget "$dtb" "/soc/$g/uart0_gpio14" phandle 2>/dev/null)" ] \
            || bad "${d##*/}: uart0 is not on GPIO 14/15"
        [ "$(fdtget "$dtb" /soc/serial@7e201000/bluetooth status 2>/dev/null)" = disabled ] || bad "${d##*/}: bluetooth still owns uart0"
        rm -f "$dtb"
    done
    [ "$(mcopy -n -i "$fat" ::/vmlinuz - | head -c 60 | tail -c 4)" = "ARMd" ] || bad "vmlinuz is not an arm64 Image"
    cfg=$(mtype -i "$fat" ::/config.txt)
    for want in arm_64bit=1 kernel=vmlinuz "initramfs initrd.img followkernel" enable_uart=1; do
        echo "$cfg" | grep -qx "$want" || bad "config.txt lacks '$want'"
    done
    root=$(mtype -i "$fat" ::/cmdline.txt | grep -o 'root=[^ ]*')
    [ "$root" = root=LABEL=pg-root ] || bad "cmdline.txt root is '$root', not p2's label"
    rm -f "$here/scratch/check-p2" "$here/scratch/check-p3"
    [ $fail -eq "$before" ] || continue
    echo "check-boards: $board: $(basename "$img") partition table, boot files, DTBs ($DTBS), cmdline root ok"
    passed=$((passed + 1))
done
echo "$passed passed, $fail failed"
[ $fail -eq 0 ]
