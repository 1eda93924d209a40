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

# The whole story: DHIS2 test server + gateway + simulated GeneXpert; results flow, DHIS2 goes
# away (buffering), comes back (drain). Logs in data/demo/.
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

# Everything CI checks: format, clippy, unit + integration tests, fuzz smoke.
test: lint unit fuzz-smoke

# Unit and integration tests (dev profile).
unit:
    cargo test --all-targets

# cargo fmt --check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Validate a config file.
check-config config="config/pocketgate.toml":
    cargo run --quiet -- check-config --config {{config}}

# Short run of every fuzz target (CI): no sanitizer, so the instrumented build stays quick.
fuzz-smoke: (fuzz "20" "none")

# Run every fuzz target for SECONDS each (cargo-fuzz on stable rustc via RUSTC_BOOTSTRAP=1);
# SANITIZER address (default) or none. Seeds: tests/fuzz/seeds/<target>/; corpus is not committed.
fuzz seconds="300" sanitizer="address":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    export RUSTC_BOOTSTRAP=1
    for t in $(cargo fuzz list --fuzz-dir tests/fuzz); do
        mkdir -p "tests/fuzz/corpus/$t"
        cargo fuzz run --sanitizer {{sanitizer}} --fuzz-dir tests/fuzz "$t" \
            "tests/fuzz/corpus/$t" "tests/fuzz/seeds/$t" \
            -- -max_total_time={{seconds}} -rss_limit_mb=2048 2>&1 | tail -n 3
    done

# Benchmarks (full runs; CI runs their smoke variants inside `just unit`): ASTM over TCP with 8
# analyzers + idle RSS, and a 100,000-record backlog drained into dhis2-sim. Results go to
# benches/results/<date>-<machine>[-sync].md. The harness builds in its own target dir so
# target/release keeps the size-tuned binaries it measures.
bench:
    cargo build --release --bins
    CARGO_TARGET_DIR=target/bench BENCH_BIN="$PWD/target/release/pocketgate" cargo bench --bench ingest
    CARGO_TARGET_DIR=target/bench BENCH_BIN="$PWD/target/release/pocketgate" BENCH_SIM_BIN="$PWD/target/release/dhis2-sim" cargo bench --bench sync

# --- Appliance image (issue 6; image/, board/, buildroot/) ---

# Cross toolchain: Debian cross gcc + qemu-user + a Rust std for aarch64/armv7 (idempotent).
cross-setup:
    image/cross-setup.sh

# Static aarch64 (or armv7-unknown-linux-gnueabihf) release binary, then its unit tests under qemu-user.
cross target="aarch64-unknown-linux-gnu":
    #!/usr/bin/env bash
    set -euo pipefail
    source image/cross-env.sh
    cargo build --release --target {{target}} --bin pocketgate
    f=target/{{target}}/release/pocketgate
    file $f | tee /dev/stderr | grep -q 'statically linked'
    echo "size: $(stat -c %s $f) bytes"
    cargo test --target {{target}} --lib

# SD-card image for a board (qemu-virt, rpi3, rpi4, rpi-zero2w) → image/out/pocketgate-BOARD.img.xz
image board="qemu-virt":
    image/build.sh {{board}}

# Boot the qemu-virt image: ASTM ACK, DHIS2 delivery to the host, 3 power cuts during ingest.
image-test cuts="3":
    image/test.sh --power-cuts {{cuts}}

# What CI runs: dev-profile cross build, qemu-virt image (no xz), one boot + one power cut.
image-test-smoke:
    #!/usr/bin/env bash
    set -euo pipefail
    source image/cross-env.sh
    cargo build --target aarch64-unknown-linux-gnu --bin pocketgate
    IMAGE_XZ=0 image/build.sh qemu-virt target/aarch64-unknown-linux-gnu/debug/pocketgate
    image/test.sh --power-cuts 1

# Partition table and boot files of the Pi images (builds them first if missing).
image-check-boards:
    image/check-boards.sh rpi3 rpi4 rpi-zero2w

# Lint the Buildroot BR2_EXTERNAL tree (it cannot be built here: no upstream downloads).
buildroot-check:
    buildroot/check.sh
