#!/usr/bin/env bash
# One-time (idempotent) setup for `just cross`: Debian cross compilers, qemu-user to run the
# tests, and a Rust standard library for aarch64/armv7 (appliance.md §6.1).
# The Rust side comes from Debian too, never from rustup's servers (CI reaches only the package
# registries): rustc-web + cargo-web (1.96 in bookworm-security; the crate needs >= 1.88) and the
# matching libstd-rust-web-dev of the target architecture, unpacked with `dpkg-deb -x` so that
# /usr/lib/rustlib/<target>/ exists (brief "Facts about this machine"; appliance.md §6.1).
# cross-env.sh points cargo at /usr/bin/rustc. ARCHES="arm64 armhf" (default arm64: the Pi 3/4/5
# and Zero 2 W images; armhf for `just cross armv7-unknown-linux-gnueabihf`).
set -euo pipefail
sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
arches=${ARCHES:-arm64}
need=(rustc-web cargo-web qemu-user-static file device-tree-compiler mtools dosfstools e2fsprogs
      fdisk cpio kmod xz-utils qemu-system-arm qemu-efi-aarch64 fakeroot)
for a in $arches; do
    case $a in
    arm64) need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
    armhf) need+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
    *) echo "cross-setup: unknown architecture $a (arm64, armhf)" >&2; exit 2 ;;
    esac
done
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    $sudo_cmd apt-get update -qq || true   # a failing foreign index ("Mirror sync") is not fatal
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
have=$(/usr/bin/rustc -V | awk '{print $2}')
[ "$(printf '%s\n%s\n' "$have" "$msrv" | sort -V | head -1)" = "$msrv" ] \
    || { echo "cross-setup: Debian's rustc-web is $have, the crate needs >= $msrv (is bookworm-security in sources.list?)" >&2; exit 1; }
v=$(dpkg-query -W -f '${Version}' rustc-web)
for a in $arches; do
    t=aarch64-unknown-linux-gnu; [ "$a" = armhf ] && t=armv7-unknown-linux-gnueabihf
    [ -d "/usr/lib/rustlib/$t/lib" ] && ls /usr/lib/rustlib/$t/lib/libstd-*.rlib >/dev/null 2>&1 && continue
    # apt-get download needs the foreign architecture's index (dpkg --add-architecture).
    dpkg --print-foreign-architectures | grep -qx "$a" || { $sudo_cmd dpkg --add-architecture "$a"; $sudo_cmd apt-get update -qq || true; }
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q "libstd-rust-web-dev:$a=$v" && $sudo_cmd dpkg-deb -x ./*.deb /)
    rm -rf "$tmp"
done
echo "cross-setup: ok ($(/usr/bin/rustc -V), std for: $(ls /usr/lib/rustlib | grep -v -e etc -e x86_64 | tr '\n' ' '))"
