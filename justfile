# pocketgate — `just` lists the recipes. CI runs `just test` (see .ci/run).

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Run the gateway with the demo config (two ASTM TCP sources on 127.0.0.1:5100/5101).
run config="config/demo.toml":
    cargo run --quiet -- run --config {{config}}

# Start the gateway, play real analyzer captures into it, list what was stored.
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --quiet
    rm -rf data/demo
    target/debug/pocketgate run --config config/demo.toml & pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/5100) 2>/dev/null && break; sleep 0.1; done
    target/debug/pocketgate simulate --tcp 127.0.0.1:5100 tests/fixtures/astm/*.astm
    target/debug/pocketgate records --config config/demo.toml --limit 5

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

# Benchmarks: ASTM over TCP with 8 analyzers + idle RSS; writes benches/results/<date>-<machine>.md.
# The harness builds in its own target dir so target/release keeps the size-tuned binary it measures.
bench:
    cargo build --release
    CARGO_TARGET_DIR=target/bench BENCH_BIN="$PWD/target/release/pocketgate" cargo bench --bench ingest
