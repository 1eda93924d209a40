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

# Short run of every fuzz target (CI); `just fuzz 600` for a long one.
fuzz-smoke: (fuzz "20")

# Run every fuzz target for SECONDS each (needs cargo-fuzz; stable rustc via RUSTC_BOOTSTRAP).
fuzz seconds="300":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    for t in $(RUSTC_BOOTSTRAP=1 cargo fuzz list --fuzz-dir tests/fuzz); do
        RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz "$t" -- -max_total_time={{seconds}} -rss_limit_mb=2048
    done

# Benchmarks: ASTM over TCP with 8 analyzers + idle RSS; writes benches/results/<date>-<machine>.md.
bench:
    cargo bench --bench ingest
