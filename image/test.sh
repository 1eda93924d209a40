#!/usr/bin/env bash
# Boot test of the qemu-virt image under qemu-system-aarch64 -M virt (UEFI: Debian's AAVMF,
# TCG; appliance.md §2.5): the gateway comes up, an ASTM message sent to a forwarded port is
# ACKed, the DHIS2 test server on the host (reached from the guest at 10.0.2.2) receives the
# event, the web page answers on a forwarded port (boot-to-UI time printed), and inside the VM
# the hotspot self-test joins the box's Wi-Fi from a second simulated radio (mac80211_hwsim)
# and fetches the page over it; then power cuts during ingest: after each boot /data is clean (e2fsck), the store
# passes PRAGMA integrity_check, and in the end every ACKed message is in DHIS2 exactly once.
# Usage: image/test.sh [--power-cuts N]   (0 = boot check only, the CI smoke)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
cuts=3
[ "${1:-}" = --power-cuts ] && cuts=$2
img=$here/out/pocketgate-qemu-virt.img
# `just image` leaves only the .img.xz (the file users flash): unpack it once, beside it.
if [ ! -f "$img" ] || { [ -f "$img.xz" ] && [ "$img.xz" -nt "$img" ]; }; then
    [ -f "$img.xz" ] || { echo "image-test: neither $img nor $img.xz (run: just image qemu-virt)" >&2; exit 2; }
    xz -dkc "$img.xz" > "$img.tmp" && mv "$img.tmp" "$img"
fi
for t in qemu-system-aarch64 mcopy python3; do
    command -v $t >/dev/null || { echo "image-test: $t missing (apt-get install qemu-system-arm mtools python3)" >&2; exit 2; }
done
code=/usr/share/AAVMF/AAVMF_CODE.fd
[ -f $code ] || { echo "image-test: $code missing (apt-get install qemu-efi-aarch64)" >&2; exit 2; }
pg=$repo/target/debug/pocketgate; sim=$repo/target/debug/dhis2-sim
[ -x "$pg" ] && [ -x "$sim" ] || (cd "$repo" && cargo build --quiet --bins)
work=$here/scratch/test; rm -rf "$work"; mkdir -p "$work"
token=d2pat_qg8aTF459WO5LMr0uLi7P3wG8IXq683V1086477046   # the demo token (justfile)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
simport=$(port); astm=$(port); web=$(port)

# The card: a copy grown to 1 GiB (first boot grows /data to fill it), with a preseeded config
# and token on the boot partition (README "Flash it": preseeding).
cp "$img" "$work/disk.img"; truncate -s 1G "$work/disk.img"
cat > "$work/pocketgate.toml" <<TOML
[gateway]
name = "image-test"
data_dir = "/data/pocketgate"

[[sources]]
id = "genexpert-1"
protocol = "astm"
transport = "tcp-server"
listen = "0.0.0.0:5100"

[dhis2]
url = "http://10.0.2.2:$simport"
token_env = "POCKETGATE_DHIS2_TOKEN"
temprs = "/data/pocketgate/temprs"
org_unit = "OuClinicA01"
retry_min = "1s"
retry_max = "3s"

[web]
listen = "0.0.0.0:80"
initial_password_file = "/data/pocketgate/initial-password"
manage_clock = true
TOML
echo "POCKETGATE_DHIS2_TOKEN=$token" > "$work/pocketgate.env"
mcopy -i "$work/disk.img@@4194304" "$work/pocketgate.toml" "$work/pocketgate.env" ::
# The first boot also runs the hotspot self-test: two simulated radios, the test asked for on
# the kernel command line (systemd-boot's entry on the boot partition).
entry=loader/entries/pocketgate.conf
mcopy -n -i "$work/disk.img@@4194304" "::$entry" "$work/entry.conf"
sed 's/^options .*/& pocketgate.hwsim=2 pocketgate.selftest=hotspot/' "$work/entry.conf" > "$work/entry-selftest.conf"
set_entry() { mcopy -o -i "$work/disk.img@@4194304" "$1" "::$entry"; }
set_entry "$work/entry-selftest.conf"

"$sim" --listen 127.0.0.1:$simport --version 2.41.3 --token $token \
    --metadata "$repo/tests/fixtures/dhis2/metadata.json" --state "$work/dhis2-state.json" \
    > "$work/dhis2-sim.log" 2>&1 & simpid=$!
qpid=""
trap 'kill $simpid 2>/dev/null || true; [ -z "$qpid" ] || kill -9 $qpid 2>/dev/null || true' EXIT
cp /usr/share/AAVMF/AAVMF_VARS.fd "$work/vars.fd"

boot=0
boot() {
    boot=$((boot + 1))
    t_start=$(date +%s.%N)
    qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 1 -m 512 \
        -drive if=pflash,format=raw,readonly=on,file=$code \
        -drive if=pflash,format=raw,file="$work/vars.fd" \
        -drive file="$work/disk.img",format=raw,if=none,id=hd0 -device virtio-blk-pci,drive=hd0 \
        -netdev user,id=n0,hostfwd=tcp:127.0.0.1:$astm-:5100,hostfwd=tcp:127.0.0.1:$web-:80 -device virtio-net-pci,netdev=n0,romfile= \
        -device virtio-rng-pci -device i6300esb \
        -display none -monitor none -serial file:"$work/serial-$boot.log" & qpid=$!
}
# Ready = the gateway answers an ASTM ENQ with ACK on the forwarded port (slirp accepts the TCP
# connection before the guest listens, so a connect alone proves nothing).
wait_ready() {
    local limit=$1
    python3 - "$astm" "$limit" <<'PY' || { echo "image-test: boot $boot: gateway not ready within $limit s; serial log:"; tail -30 "$work/serial-$boot.log"; exit 1; }
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + limit
while time.time() < end:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1); s.sendall(b"\x05")
            if s.recv(1) == b"\x06":
                s.sendall(b"\x04"); sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(1)
PY
    ready=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t_start}")
    echo "image-test: boot $boot: gateway ready (ASTM ENQ→ACK) ${ready} s after QEMU start"
}
# One GeneXpert result (the real S1 capture, protocols.md S1) under a new sample id.
message() {
    python3 - "$repo/tests/fixtures/astm/s01-genexpert-mtb-rif-ultra.astm" "$1" "$work/$1.astm" <<'PY'
import re, sys
raw = open(sys.argv[1], "rb").read()
text = re.sub(rb"^\x02[0-7]|\x03[0-9A-F]{2}\r\n?$", b"", raw)
open(sys.argv[3], "wb").write(text.replace(b"PR25A137", sys.argv[2].encode()))
PY
}
send() {   # prints the sample id when the gateway ACKed it
    message "$1"
    "$pg" simulate --tcp 127.0.0.1:$astm "$work/$1.astm" 2>/dev/null | grep -q '^1 of 1 messages acknowledged' && echo "$1"
}
events() { python3 -c 'import json,sys,urllib.request; o=json.load(urllib.request.urlopen("http://127.0.0.1:'$simport'/__sim/objects")); print(json.dumps(o["events"]))'; }
check_boot() {
    local log=$work/serial-$boot.log
    for _ in $(seq 60); do grep -q 'store integrity:' "$log" && break; sleep 0.5; done
    grep -q 'pocketgate: /data mounted rw (.*, fsck [01])' "$log" \
        || { echo "image-test: boot $boot: /data not mounted clean:"; grep -a 'data\|EXT4' "$log"; exit 1; }
    grep -q 'store integrity: ok' "$log" || grep -q 'store integrity: no store yet' "$log" \
        || { echo "image-test: boot $boot: integrity check failed:"; grep -a 'integrity' "$log"; exit 1; }
    ! grep -qa 'EXT4-fs error' "$log" || { echo "image-test: boot $boot: ext4 errors"; exit 1; }
    echo "image-test: boot $boot: $(grep -ao '/data mounted rw.*' "$log" | head -1); $(grep -ao 'store integrity: [a-z ]*' "$log" | head -1)"
}

boot; wait_ready 300; check_boot
# The web page on the forwarded port 80: the first visit leads to the login page, and the
# generated admin secret (first-boot console line, also setup.txt) logs in.
secret=$(grep -ao 'web admin secret [a-z0-9-]*' "$work/serial-1.log" | head -1 | awk '{print $4}')
[ -n "$secret" ] || { echo "image-test: no 'web admin secret' on the first-boot console"; grep -a 'first boot' "$work/serial-1.log"; exit 1; }
python3 - "$web" "$t_start" "$secret" <<'PY' || { echo "image-test: web login on port 80 of the VM failed"; tail -20 "$work/serial-1.log"; exit 1; }
import http.cookiejar, re, sys, time, urllib.parse, urllib.request
port, t0, secret = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
jar = http.cookiejar.CookieJar()
web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
end = time.time() + 120
page = ""
while time.time() < end:
    try:
        with web.open(base + "/", timeout=5) as r:
            page, at = r.read().decode("utf-8", "replace"), r.url[len(base):]
        if 'type="password"' in page:
            break
    except OSError:
        pass
    time.sleep(0.5)
else:
    sys.exit(f"no login page within 120 s (last page: {page[:200]!r})")
ui = time.time() - t0
if at != "/login":
    sys.exit(f"the first visit went to {at}, not /login: the initial password file was not applied")
csrf = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
form = urllib.parse.urlencode({"csrf": csrf, "password": secret}).encode()
try:
    with web.open(base + "/login", data=form, timeout=30) as r:
        home, url = r.read().decode("utf-8", "replace"), r.url[len(base):]
except urllib.error.HTTPError as e:
    sys.exit(f"login with the generated secret answered {e.code}: {e.read()[:300]!r}")
if url != "/" or "Log out" not in home:
    sys.exit(f"login with the generated secret did not reach the dashboard ({url}): {home[:300]!r}")
title = re.search(r"<title>(.*?)</title>", home)
print(f"image-test: logged in on the web page with the generated admin secret ({title.group(1) if title else url}); boot to UI {ui:.1f} s after QEMU start")
# The System page's "set the clock from this phone" (the board has no RTC): the unprivileged
# gateway's `date -s` needs the CAP_SYS_TIME run-gateway gives it. The host's time is sent, so
# the rest of the test sees no jump.
csrf = re.search(r'name="csrf" value="([^"]*)"', home).group(1)
form = urllib.parse.urlencode({"csrf": csrf, "unix": str(int(time.time()))}).encode()
req = urllib.request.Request(base + "/system/time", data=form, headers={"X-CSRF-Token": csrf})
try:
    with web.open(req, timeout=30) as r:
        at = r.url[len(base):]
except urllib.error.HTTPError as e:
    sys.exit(f"setting the clock from the web page answered {e.code}: {e.read()[:300]!r}")
if at != "/system":
    sys.exit(f"setting the clock from the web page ended at {at}, not /system")
print("image-test: clock set from the web page (System page, date -s as user pocketgate)")
PY
grep -aq 'growing /dev/vda3' "$work/serial-1.log" || { echo "image-test: /data was not grown on first boot"; exit 1; }
grep -ao 'first boot: hotspot.*' "$work/serial-1.log" | head -1
send TEST-0001 > "$work/acked" || { echo "image-test: the ASTM message was not ACKed"; exit 1; }
echo "image-test: ASTM message ACKed by the gateway in the VM"
for _ in $(seq 120); do events | grep -q TEST-0001 && break; sleep 0.5; done
events | grep -q TEST-0001 || { echo "image-test: DHIS2 test server did not receive TEST-0001"; tail -20 "$work/serial-1.log"; exit 1; }
echo "image-test: DHIS2 test server on the host received the event for TEST-0001"
# The hotspot self-test's verdict on the serial console (hostapd, wpa_supplicant, DHCP, captive
# DNS, the page over Wi-Fi, the captive probe).
for _ in $(seq 240); do grep -aq 'selftest: hotspot: \(ok\|FAILED\)' "$work/serial-1.log" && break; sleep 0.5; done
grep -a 'selftest: hotspot:' "$work/serial-1.log" | sed 's/^/image-test: /'
grep -aq 'selftest: hotspot: ok' "$work/serial-1.log" || { echo "image-test: hotspot self-test did not pass"; grep -a 'hotspot\|hostapd\|dnsmasq' "$work/serial-1.log" | tail -20; exit 1; }

n=1
for cut in $(seq "$cuts"); do
    # Ingest in the background, pull the plug (kill -9 QEMU: nothing the guest had not yet
    # written reaches the disk) after a varying delay, boot again from the same card.
    ( while :; do n=$((n + 1)); send "$(printf 'CUT%d-%04d' "$cut" $n)" >> "$work/acked" || true; done ) & feeder=$!
    sleep $((2 + cut % 3))
    kill -9 $qpid; wait $qpid 2>/dev/null || true
    kill $feeder 2>/dev/null; wait $feeder 2>/dev/null || true
    [ "$cut" = 1 ] && set_entry "$work/entry.conf"   # later boots: no self-test
    echo "image-test: power cut $cut during ingest ($(wc -l < "$work/acked") messages ACKed so far)"
    boot; wait_ready 300; check_boot
done

if [ "$cuts" -gt 0 ]; then
    # Every ACKed sample is in DHIS2, and no (sample, program stage) pair is there twice (a
    # record may feed several Temprs, each with its own program stage).
    verdict() {
        python3 - "$simport" "$work/acked" <<'PY2'
import collections, json, sys, urllib.request
o = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/__sim/objects"))
acked = set(open(sys.argv[2]).read().split())
seen = collections.Counter()
for e in o["events"]:
    for dv in e.get("dataValues", []):
        if dv["dataElement"] == "LabSmplId01" and dv["value"] in acked:
            seen[(dv["value"], e.get("programStage"))] += 1
missing = acked - {k[0] for k in seen}
dups = [k for k, n in seen.items() if n > 1]
print(f"{len(acked)} {len(missing)} {len(dups)} {' '.join(sorted(missing))} {dups}")
sys.exit(0 if not missing and not dups else 1)
PY2
    }
    for _ in $(seq 240); do v=$(verdict) && break; sleep 1; done
    read -r total missing dups _ <<< "$v"
    [ "$missing" -eq 0 ] || { echo "image-test: $missing of $total ACKed messages never reached DHIS2: $v"; exit 1; }
    [ "$dups" -eq 0 ] || { echo "image-test: $dups (sample, stage) pairs reached DHIS2 more than once: $v"; exit 1; }
    echo "image-test: all $total ACKed messages reached DHIS2, none twice, after $cuts power cuts"
fi
kill -9 $qpid; wait $qpid 2>/dev/null || true
echo "image-test: 1 passed, 0 failed"
