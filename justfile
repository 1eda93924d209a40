# pocketgate — `just` lists the recipes. CI runs `just test` (see .ci/run).

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# A personal access token the demo DHIS2 test server accepts (valid 2.41+ checksum, dhis2.md §1.2).
demo_token := "d2pat_qg8aTF459WO5LMr0uLi7P3wG8IXq683V1086477046"

# Run the gateway with the demo config (ASTM on 127.0.0.1:5100/5101; DHIS2 at 127.0.0.1:8089).
run config="config/demo.toml":
    POCKETGATE_DEMO_TOKEN={{demo_token}} cargo run --quiet --bin pocketgate -- run --config {{config}}

# Results flow, DHIS2 goes away (buffering), comes back (drain). Logs in data/demo/.
# The whole story: DHIS2 test server + gateway + simulated GeneXpert.
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --quiet --bins
    rm -rf data/demo && mkdir -p data/demo
    export POCKETGATE_DEMO_TOKEN={{demo_token}}
    pg=target/debug/pocketgate
    sim_up() {
        target/debug/dhis2-sim --listen 127.0.0.1:8089 --version 2.41.3 --token {{demo_token}} \
            --metadata tests/fixtures/dhis2/metadata.json --state data/demo/dhis2-state.json \
            >> data/demo/dhis2-sim.log 2>&1 & sim=$!
        for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8089) 2>/dev/null && return; sleep 0.1; done
    }
    dhis2_events() {
        python3 -c 'import json,sys,urllib.request; o=json.load(urllib.request.urlopen("http://127.0.0.1:8089/__sim/objects")); print(len(o["events"]), "events,", len(o["trackedEntities"]), "tracked entities,", len(o["enrollments"]), "enrollments")'
    }
    # GeneXpert results for new samples: the real S1 capture with other sample ids.
    make_results() {
        python3 - "$@" <<'PY'
    import re, sys
    raw = open("tests/fixtures/astm/s01-genexpert-mtb-rif-ultra.astm", "rb").read()
    text = re.sub(rb"^\x02[0-7]|\x03[0-9A-F]{2}\r\n?$", b"", raw)
    for sample in sys.argv[2:]:
        open(f"{sys.argv[1]}/{sample}.txt", "wb").write(text.replace(b"PR25A137", sample.encode()))
    PY
    }
    sim_up
    $pg run --config config/demo.toml 2> data/demo/gateway.log & gw=$!
    trap 'kill $gw $sim 2>/dev/null || true' EXIT
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/5100) 2>/dev/null && break; sleep 0.1; done

    echo "== 1. A GeneXpert sends an Xpert MTB/RIF Ultra result (real capture, protocols.md S1)"
    $pg simulate --tcp 127.0.0.1:5100 tests/fixtures/astm/s01-genexpert-mtb-rif-ultra.astm
    sleep 3
    $pg status --config config/demo.toml
    echo "   DHIS2 now holds: $(dhis2_events)"

    echo; echo "== 2. The link to DHIS2 goes down; three more results arrive and are buffered"
    kill $sim; wait $sim 2>/dev/null || true
    make_results data/demo DEMO-0001 DEMO-0002 DEMO-0003
    $pg simulate --tcp 127.0.0.1:5100 data/demo/DEMO-000*.txt
    sleep 3
    $pg status --config config/demo.toml

    echo; echo "== 3. The link comes back: the backlog drains by itself, each result once"
    sim_up
    for _ in $(seq 60); do
        $pg status --config config/demo.toml | grep -q "outbox:.*pending" || break; sleep 1
    done
    $pg status --config config/demo.toml
    echo "   DHIS2 now holds: $(dhis2_events)"
    echo; echo "Records: target/debug/pocketgate records --config config/demo.toml | less"

# Everything CI checks: format, clippy, unit + integration tests (torture and bench smoke
# included), fuzz smoke, browser tests, the Buildroot tree's lint and the image boot smoke.
test: lint unit fuzz-smoke web-test buildroot-check image-test-smoke

# Unit and integration tests (dev profile).
unit:
    cargo test --all-targets

# Screenshots at 360 px and 1280 px go to target/web-screenshots/.
# Browser tests of the web page in headless Debian chromium (playwright-core).
web-test:
    # --tests: the same feature set as `cargo test`, so a CI run reuses what the unit tests built.
    cargo build --bins --tests
    cd tests/web && npm ci --no-audit --no-fund --silent
    node tests/web/browser.mjs

# cargo fmt --check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Validate a config file.
check-config config="config/pocketgate.toml":
    cargo run --quiet -- check-config --config {{config}}

# Short run of every fuzz target (CI): no sanitizer, so the instrumented build stays quick.
fuzz-smoke: (fuzz "20" "none")

# cargo-fuzz on stable rustc via RUSTC_BOOTSTRAP=1; SANITIZER address (default) or none.
# Seeds: tests/fuzz/seeds/<target>/; the corpus is not committed. Writes target/fuzz-report.md:
# executions, coverage (edges), features, corpus size and crashes per target.
# Run every fuzz target for SECONDS each and report.
fuzz seconds="300" sanitizer="address":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    export RUSTC_BOOTSTRAP=1
    mkdir -p target
    report=target/fuzz-report.md
    printf '| target | seconds | executions | coverage (edges) | features | corpus | crashes |\n|---|---|---|---|---|---|---|\n' > "$report"
    failed=0
    for t in $(cargo fuzz list --fuzz-dir tests/fuzz); do
        mkdir -p "tests/fuzz/corpus/$t"
        log="target/fuzz-$t.log"
        status=0
        cargo fuzz run --sanitizer {{sanitizer}} --fuzz-dir tests/fuzz "$t" \
            "tests/fuzz/corpus/$t" "tests/fuzz/seeds/$t" \
            -- -max_total_time={{seconds}} -rss_limit_mb=2048 -print_final_stats=1 > "$log" 2>&1 || status=$?
        tail -n 3 "$log"
        runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -n1 | grep -o '[0-9]*' || echo "?")
        last=$(grep -E '^#[0-9]+' "$log" | tail -n1)
        cov=$(grep -o 'cov: [0-9]*' <<< "$last" | grep -o '[0-9]*' || echo "?")
        ft=$(grep -o 'ft: [0-9]*' <<< "$last" | grep -o '[0-9]*' || echo "?")
        corp=$(grep -o 'corp: [0-9]*' <<< "$last" | grep -o '[0-9]*' || echo "?")
        crashes=0
        if [ "$status" -ne 0 ]; then crashes=1; failed=1; fi
        echo "| $t | {{seconds}} | $runs | $cov | $ft | $corp | $crashes |" >> "$report"
    done
    cat "$report"
    exit $failed

# Issue 7's suite: ingest (ASTM, HL7/MLLP, HTTP JSON), the Node-RED peer doing the same job,
# the 100k backlog into dhis2-sim, Tempr throughput, 1,000,000 stored records, CPU per message.
# Installs its peers first (Node-RED via npm into target/node-red; nodejs/npm/valgrind via
# apt-get when missing). Each part writes its section to target/bench-results/; the report joins
# them with the COMPASS targets marked met/missed. The harness builds in its own target dir so
# target/release keeps the size-tuned binaries it measures. `conditions` ("quiet machine",
# "shared with 7 builds") is written into the results file.
# All benchmarks → benches/results/<date>-<machine>.md (just bench conditions="quiet machine").
bench conditions="": bench-peers
    #!/usr/bin/env bash
    set -euo pipefail
    # valgrind: x86-64 instructions per message; qemu-user (the dynamic qemu-aarch64, which loads
    # TCG plugins): the aarch64 ones, when `just cross` has built the aarch64 binary.
    need=(); command -v valgrind >/dev/null || need+=(valgrind)
    command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
    if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq "${need[@]}" || echo "bench: could not install ${need[*]}" >&2
    fi
    export BENCH_SINCE=$(date +%s) BENCH_CONDITIONS="{{conditions}}"
    start=$SECONDS
    # The release binaries and the harness build side by side: the release build ends in a
    # single-threaded LTO link of several minutes, the harness fills the other core meanwhile.
    cargo build --release --bins & rel=$!
    CARGO_TARGET_DIR=target/bench cargo bench --no-run --bench ingest --bench peer --bench sync --bench tempr --bench scale --bench cpu --bench report
    wait $rel
    echo "== build: $((SECONDS - start)) s" >&2
    export CARGO_TARGET_DIR=target/bench BENCH_BIN="$PWD/target/release/pocketgate" BENCH_SIM_BIN="$PWD/target/release/dhis2-sim"
    for part in ingest peer sync tempr scale cpu; do
        t=$SECONDS; cargo bench --bench $part; echo "== $part: $((SECONDS - t)) s" >&2
    done
    cargo bench --bench report
    echo "== just bench: $((SECONDS - start)) s" >&2

# Node-RED is pinned in benches/node-red/package-lock.json; nodejs and npm come from apt-get when
# missing (Debian 12's node 18 is enough for Node-RED 4).
# Install the bench's peers: Node-RED into target/node-red (npm ci).
bench-peers:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y nodejs npm
        else
            echo "bench-peers: node and npm are missing (apt-get install nodejs npm)" >&2; exit 1
        fi
    fi
    mkdir -p target/node-red
    if ! cmp -s benches/node-red/package-lock.json target/node-red/package-lock.json \
        || [ ! -f target/node-red/node_modules/node-red/package.json ]; then
        cp benches/node-red/package.json benches/node-red/package-lock.json target/node-red/
        (cd target/node-red && npm ci --no-audit --no-fund --loglevel=error)
    fi
    echo "Node-RED $(node -p 'require("./target/node-red/node_modules/node-red/package.json").version') on node $(node --version)"

# The test build, one Node-RED round trip if Node-RED installs; the combined report goes to
# target/bench-results-smoke/report.md, never to benches/results/.
# A tiny run of every bench part (≤ 2 min once built), for CI.
bench-smoke:
    #!/usr/bin/env bash
    set -euo pipefail
    export BENCH_SINCE=$(date +%s)
    if just bench-peers; then
        export BENCH_REQUIRE_NODE_RED=1
    else
        echo "bench-smoke: Node-RED is not installable here; the peer part runs pocketgate's side only" >&2
    fi
    cargo test --bench ingest --bench peer --bench sync --bench tempr --bench scale --bench cpu
    cargo test --bench report

# Crash-safety and disk-full torture, short version (also part of `cargo test`; ≤ 1 min).
torture-smoke:
    cargo test --test torture

# 200 SIGKILLs over 1,000 results, 60 s of hostile devices, a 10-minute soak; figures go to
# target/torture-report.md and are copied into docs/reliability.md.
# The full torture run (~17 min).
torture rounds="200" messages="250" hostile="60" soak="600":
    TORTURE_ROUNDS={{rounds}} TORTURE_MESSAGES={{messages}} TORTURE_HOSTILE_SECONDS={{hostile}} \
        TORTURE_SOAK_SECONDS={{soak}} TORTURE_REPORT=target/torture-report.md cargo test --test torture

# --- Appliance image (issue 6; image/, board/, buildroot/) ---

# Cross toolchain: Debian cross gcc + qemu-user + a Rust std for aarch64/armv7 (idempotent).
cross-setup:
    image/cross-setup.sh

# Size limits of the release binary in bytes (issue 17; figures in
# benches/results/2026-12-07-binary-size.md). aarch64 is the shipped static binary (after
# `just cross-build`); x86-64 is `cargo build --release`, a proxy that catches growth on a machine
# without the cross toolchain.
size_limit_aarch64 := "8388608"
size_limit_x86_64 := "12100000"

# Static aarch64 (or armv7-unknown-linux-gnueabihf) release binary, stripped, run once under qemu-user.
cross-build target="aarch64-unknown-linux-gnu":
    #!/usr/bin/env bash
    set -euo pipefail
    source image/cross-env.sh
    # The shipped binary aborts on panic and never unwinds, so it needs no unwind tables: no
    # .eh_frame_hdr from the linker, and .eh_frame/.gcc_except_table stripped after the link
    # (−1.5 MB; benches/results/2026-12-07-binary-size.md). A panic still prints its message;
    # only RUST_BACKTRACE=1 cannot walk the stack. The unit tests (`just cross`) unwind
    # (libtest catches panics), so they keep cross-env.sh's flags.
    v=CARGO_TARGET_$(echo {{target}} | tr a-z- A-Z_)_RUSTFLAGS
    # Segments aligned to 16 KiB, not the aarch64 default of 64 KiB: the file padding between
    # the code and data segments was ~48 KB. 16 KiB, not 4 KiB: the Raspberry Pi 5 kernel
    # (bcm2712_defconfig, buildroot/configs/pocketgate_rpi5_defconfig) runs 16 KiB pages, and a
    # 16 KiB-aligned binary loads on 4 KiB kernels as well.
    # No RELRO: a static non-PIE binary gets no PT_GNU_RELRO segment from ld anyway (readelf -l
    # shows none), yet `-z relro` still pads the data segment's start to a page (−4,360 bytes).
    env "$v=${!v} -C link-arg=-Wl,--no-eh-frame-hdr -C link-arg=-Wl,-z,max-page-size=16384 -C link-arg=-Wl,-z,norelro" cargo build --release --target {{target}} --bin pocketgate
    f=target/{{target}}/release/pocketgate
    objcopy=aarch64-linux-gnu-objcopy; [ {{target}} = armv7-unknown-linux-gnueabihf ] && objcopy=arm-linux-gnueabihf-objcopy
    $objcopy -R .eh_frame -R .gcc_except_table $f $f.tmp && mv $f.tmp $f
    qemu-$( [ {{target}} = armv7-unknown-linux-gnueabihf ] && echo arm || echo aarch64 )-static $f --version
    file $f | tee /dev/stderr | grep -q 'statically linked'
    echo "size: $(stat -c %s $f) bytes"

# `just cross-build`, then the library's unit tests built for the target and run under qemu-user.
cross target="aarch64-unknown-linux-gnu": (cross-build target)
    #!/usr/bin/env bash
    set -euo pipefail
    source image/cross-env.sh
    # The tests that run host programs (hostapd, dnsmasq, pppd… on the rendered files, and a
    # missing command's spawn error, which qemu-user reports as a child exit instead) run
    # natively in `just test`.
    cargo test --target {{target}} --lib -- --skip netcfg::tests::real_ --skip netcfg::tests::host_runs_

# `aarch64` is built by `just cross-build` (CI's image smoke builds it); `x86_64` builds
# `cargo build --release` first.
# Fail when a release binary (aarch64, x86_64 or all) is over its limit.
size-check which="all":
    #!/usr/bin/env bash
    set -euo pipefail
    case {{which}} in all|x86_64|aarch64) ;; *) echo "size-check: which is all, x86_64 or aarch64" >&2; exit 2;; esac
    failed=0
    check() { # name file limit
        [ -f "$2" ] || { echo "size-check: $2 is missing (build it first)" >&2; failed=1; return; }
        local size; size=$(stat -c %s "$2")
        if [ "$size" -le "$3" ]; then
            echo "size-check: $1 $size bytes ≤ $3 (margin $(( $3 - size )))"
        else
            echo "size-check: $1 $size bytes is over its limit of $3 by $(( size - $3 )) bytes" >&2; failed=1
        fi
    }
    case {{which}} in all|x86_64) cargo build --release --bin pocketgate
        check x86_64 target/release/pocketgate {{size_limit_x86_64}};; esac
    case {{which}} in all|aarch64)
        check aarch64 target/aarch64-unknown-linux-gnu/release/pocketgate {{size_limit_aarch64}};; esac
    exit $failed

# SD-card image for a board (qemu-virt, rpi3, rpi4, rpi-zero2w) → image/out/pocketgate-BOARD.img.xz
image board="qemu-virt":
    image/build.sh {{board}}

# Boot the qemu-virt image: ASTM ACK, DHIS2 delivery to the host, 3 power cuts during ingest.
image-test cuts="3":
    image/test.sh --power-cuts {{cuts}}

# Installs the cross packages first (Debian's); no xz; the image is the one users would flash.
# What CI runs: shipped aarch64 binary (size-checked), qemu-virt image, one boot + one power cut.
image-test-smoke:
    image/cross-setup.sh
    just cross-build
    just size-check aarch64
    IMAGE_XZ=0 image/build.sh qemu-virt target/aarch64-unknown-linux-gnu/release/pocketgate
    image/test.sh --power-cuts 1

# Partition table and boot files of the Pi images (builds them first if missing).
image-check-boards:
    image/check-boards.sh rpi3 rpi4 rpi-zero2w

# Lint the Buildroot BR2_EXTERNAL tree (it cannot be built here: no upstream downloads).
buildroot-check:
    buildroot/check.sh
