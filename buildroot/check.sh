#!/usr/bin/env bash
# Lint of the BR2_EXTERNAL tree (appliance.md §1): it cannot be built here (Buildroot downloads
# every source from upstream hosts this machine cannot reach), so check what can be checked:
# mandatory files, the external name, package .mk/Config.in well-formed, every path a defconfig
# names exists in this repo, and each defconfig's board has its config.txt and overlay.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
fail=0; passed=0
ok() { passed=$((passed + 1)); }
bad() { echo "buildroot-check: $*"; fail=$((fail + 1)); }
for f in external.desc external.mk Config.in; do if [ -s "$here/$f" ]; then ok; else bad "missing $f"; fi; done
name=$(sed -n 's/^name: *//p' "$here/external.desc")
if [[ $name =~ ^[A-Za-z0-9_]+$ ]]; then ok; else bad "external.desc name '$name' is not [A-Za-z0-9_]+"; fi
if grep -q "BR2_EXTERNAL_${name}_PATH)/package/\*/\*.mk" "$here/external.mk"; then ok; else bad "external.mk does not include package/*/*.mk"; fi
while read -r src; do
    p=${src//\$BR2_EXTERNAL_${name}_PATH/$here}
    if [ -f "$p" ]; then ok; else bad "Config.in sources missing $src"; fi
done < <(sed -n 's/^source "\(.*\)"/\1/p' "$here/Config.in")
for pkg in "$here"/package/*/; do
    p=$(basename "$pkg"); P=$(echo "$p" | tr 'a-z-' 'A-Z_')
    mk=$pkg/$p.mk
    if [ -f "$mk" ] && [ -f "$pkg/Config.in" ]; then ok; else bad "package $p lacks $p.mk or Config.in"; continue; fi
    for v in VERSION SITE LICENSE LICENSE_FILES; do
        if grep -qE "^${P}_$v *[+:]?= *[^ ]" "$mk"; then ok; else bad "$p.mk: ${P}_$v not set"; fi
    done
    if grep -qxF '$(eval $(cargo-package))' "$mk"; then ok; else bad "$p.mk does not use \$(eval \$(cargo-package))"; fi
    # Every variable the .mk assigns carries the package prefix (a typo'd prefix is silently ignored).
    foreign=$(grep -oE '^[A-Za-z0-9_]+ *[+:?]?=' "$mk" | grep -v "^${P}_" || true)
    if [ -z "$foreign" ]; then ok; else bad "$p.mk assigns foreign variables: $foreign"; fi
    if grep -q "^config BR2_PACKAGE_$P\$" "$pkg/Config.in"; then ok; else bad "$p/Config.in lacks config BR2_PACKAGE_$P"; fi
    if grep -q 'BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS' "$pkg/Config.in"; then ok; else bad "$p/Config.in lacks the rustc arch dependency"; fi
done
for def in "$here"/configs/*_defconfig; do
    d=$(basename "$def" _defconfig); board=${d#pocketgate_}
    for f in "$repo/board/$board/config.txt" "$repo/board/$board/rootfs-overlay"; do
        if [ -e "$f" ]; then ok; else bad "$d: missing ${f#"$repo"/}"; fi
    done
    if grep -q '^BR2_PACKAGE_POCKETGATE=y' "$def"; then ok; else bad "$d: does not enable BR2_PACKAGE_POCKETGATE"; fi
    while read -r path; do
        p=${path//\$(BR2_EXTERNAL_${name}_PATH)/$here}
        if [ -e "$p" ]; then ok; else bad "$d: path does not exist: $path"; fi
    done < <(grep -oE '\$\(BR2_EXTERNAL_[A-Z0-9_]+_PATH\)[^" ]*' "$def")
    other=$(grep -oE 'BR2_EXTERNAL_[A-Z0-9_]+_PATH' "$def" | grep -v "BR2_EXTERNAL_${name}_PATH" || true)
    if [ -z "$other" ]; then ok; else bad "$d: names another external tree: $other"; fi
    malformed=$(grep -vE '^(#.*|BR2_[A-Za-z0-9_]+=(y|"[^"]*"|[0-9]+)|)$' "$def" || true)
    if [ -z "$malformed" ]; then ok; else bad "$d: malformed lines: $malformed"; fi
done
for f in "$here"/board/*.sh; do if sh -n "$f"; then ok; else bad "$f: shell syntax"; fi; done
echo "$passed passed, $fail failed"
[ $fail -eq 0 ]
