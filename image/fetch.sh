#!/usr/bin/env bash
# Download the Debian packages an image is made of, into image/cache/debs (idempotent).
# A private APT root (appliance.md §2.2) so nothing in /etc changes, with non-free-firmware
# for raspi-firmware and firmware-brcm80211, and an empty dpkg status so the dependency closure
# is complete (libc6 included): the image has no dpkg, we only unpack (`dpkg-deb -x`).
# Usage: image/fetch.sh ARCH PACKAGE...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
arch=$1; shift
cache=$here/cache
apt=$cache/apt
mkdir -p "$apt"/{lists/partial,archives/partial,parts,prefs} "$cache/debs/$arch"
touch "$apt/status"
mirror=${POCKETGATE_DEBIAN_MIRROR:-http://deb.debian.org}
key=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$apt/sources.list" <<SRC
deb [signed-by=$key] $mirror/debian bookworm main non-free-firmware
deb [signed-by=$key] $mirror/debian bookworm-updates main non-free-firmware
deb [signed-by=$key] $mirror/debian-security bookworm-security main non-free-firmware
SRC
cat > "$apt/apt.conf" <<CONF
Dir::State::Lists "$apt/lists"; Dir::State::status "$apt/status"; Dir::Cache "$apt";
Dir::Cache::archives "$apt/archives"; Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/parts"; Dir::Etc::Preferences "$apt/prefs/none";
Dir::Etc::PreferencesParts "$apt/prefs"; APT::Architecture "$arch";
APT::Architectures { "$arch"; }; Acquire::Languages "none"; APT::Install-Recommends "false";
APT::Sandbox::User "root";
CONF
export APT_CONFIG=$apt/apt.conf
# The lists are refreshed once a day; a failing index ("Mirror sync in progress") is retried.
if [ -z "$(find "$apt/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    for try in 1 2 3; do
        apt-get -q update >"$apt/update.log" 2>&1 && ! grep -q '^E:' "$apt/update.log" && break
        echo "fetch: apt-get update failed (try $try), retrying" >&2; sleep 5
    done
fi
# The closure: every package apt would install into an empty system, by name=version.
mapfile -t want < <(apt-get -s install "$@" | awk '/^Inst /{gsub(/[()]/,"",$3); print $2"="$3}')
cd "$cache/debs/$arch"
missing=()
for pv in "${want[@]}"; do
    p=${pv%%=*}; v=${pv#*=}; v=${v//:/%3a}
    ls "${p}_${v}_"*.deb >/dev/null 2>&1 || missing+=("$pv")
done
[ ${#missing[@]} -eq 0 ] || apt-get -q download "${missing[@]}" >/dev/null
# The list of .debs of this closure, for the image builder.
for pv in "${want[@]}"; do p=${pv%%=*}; v=${pv#*=}; v=${v//:/%3a}; ls "$PWD/${p}_${v}_"*.deb; done
