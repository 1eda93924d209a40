#!/usr/bin/env bash
# One-time (idempotent) setup for `just cross`: Debian cross compilers, qemu-user to run the
# tests, and a Rust standard library for aarch64/armv7 (appliance.md §6.1).
# The crate needs Rust ≥ 1.88 (let chains). Debian's rustc-web is 1.85 in bookworm main (too old)
# and 1.96 in bookworm-security when the mirror carries it: we use Debian's std when its rustc is
# new enough, else rustup's target std (`rustup target add`).
set -euo pipefail
sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
need=()
for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
         qemu-user-static file device-tree-compiler mtools dosfstools e2fsprogs fdisk cpio kmod xz-utils qemu-system-arm qemu-efi-aarch64; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    $sudo_cmd apt-get update -qq || true   # a failing foreign index ("Mirror sync") is not fatal
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
ver() { "$1" -V 2>/dev/null | awk '{print $2}'; }
newer() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    if command -v rustup >/dev/null; then
        rustup target list --installed | grep -qx "$t" || rustup target add "$t"
    elif [ -x /usr/bin/rustc ] && newer "$(ver /usr/bin/rustc)" "$msrv"; then
        arch=arm64; [ "$t" = armv7-unknown-linux-gnueabihf ] && arch=armhf
        [ -d "/usr/lib/rustlib/$t" ] || {
            v=$(dpkg-query -W -f '${Version}' rustc-web)
            tmp=$(mktemp -d); (cd "$tmp" && apt-get download "libstd-rust-web-dev:$arch=$v" && dpkg-deb -x ./*.deb /)
            rm -rf "$tmp"; }
    else
        echo "cross-setup: need Rust >= $msrv with a $t std: rustup, or Debian rustc-web >= $msrv" >&2; exit 1
    fi
done
echo "cross-setup: ok ($(rustc -V))"
