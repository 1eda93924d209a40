# shellcheck shell=bash
# Sourced by image/cross.sh and the justfile: the environment a cross build needs (appliance.md §6.1).
# Debian's cross gcc links the final binary and compiles the C in our deps (bundled SQLite, ring);
# `+crt-static` makes a fully static glibc binary (no NSS modules needed: appliance.md §6.2 —
# DNS goes through hickory-dns in reqwest, /etc/hosts + /etc/resolv.conf only).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm-static"
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
# The cross builds use Debian's rustc-web, whose sysroot holds the target std that cross-setup.sh
# unpacked (rustup's toolchain has none without a download from rustup's servers).
export RUSTC=/usr/bin/rustc
