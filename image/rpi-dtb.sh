#!/usr/bin/env bash
# Route the Pi's PL011 UART (ttyAMA0) to GPIO 14/15 for an RS-232 HAT in a mainline DTB, as the
# disable-bt overlay does on Raspberry Pi OS (Debian's raspi-firmware ships no overlays):
# uart0's pins become uart0_gpio14, Bluetooth (uart0's child) and the mini-UART (uart1, which
# also claims GPIO 14/15) are disabled. Needs fdtget/fdtput (device-tree-compiler).
# Usage: image/rpi-dtb.sh FILE.dtb...
set -euo pipefail
for dtb in "$@"; do
    gpio=$(fdtget -l "$dtb" /soc | grep -m1 '^gpio@') ; gpio=/soc/$gpio
    uart0=/soc/serial@7e201000; uart1=/soc/serial@7e215040
    fdtget "$dtb" "$gpio/uart0_gpio14" brcm,pins >/dev/null
    ph=$(fdtget -t x "$dtb" "$gpio/uart0_gpio14" phandle 2>/dev/null || true)
    if [ -z "$ph" ]; then
        max=$(dtc -q -I dtb -O dts "$dtb" | sed -n 's/.*phandle = <0x\([0-9a-f]*\)>.*/\1/p' | sort -u | while read -r h; do echo $((16#$h)); done | sort -n | tail -1)
        ph=$(printf '%x' $((max + 1)))
        fdtput -t x "$dtb" "$gpio/uart0_gpio14" phandle "$ph"
    fi
    fdtput -t x "$dtb" $uart0 pinctrl-0 "$ph"
    fdtput -t s "$dtb" $uart0 status okay
    fdtget -l "$dtb" $uart0 | grep -qx bluetooth && fdtput -t s "$dtb" $uart0/bluetooth status disabled
    fdtput -t s "$dtb" $uart1 status disabled
    echo "rpi-dtb: $(basename "$dtb"): PL011 on GPIO 14/15 (pinctrl phandle 0x$ph), bluetooth and mini-UART off"
done
