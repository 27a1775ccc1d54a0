# Fogmarket tasks. `just --list` shows them; README.md explains them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @just --list

# Start the marketplace on 127.0.0.1:8000 and the fog tree of a topology (release builds); Ctrl-C stops everything. Extra flags (e.g. --tls) go to `testbed run`
run topology="testbed/topologies/local.toml" *flags:
    cargo build --release --workspace --bins
    cargo run --release -p testbed -- run --topology "{{topology}}" {{flags}}

# Build every binary, then run every test: unit, in-process and multi-process. Tests whose tool is missing (HAProxy, Chromium, PostgreSQL, root) are reported as skipped; under CI nothing is skipped
test *flags:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "installing cargo-nextest (once)" >&2
        cargo install --locked cargo-nextest
    fi
    cargo build --workspace --bins
    skipped=()
    reasons=()
    skip() { skipped+=("$1"); reasons+=("$2"); }
    if [ -z "${CI:-}" ]; then
        command -v haproxy >/dev/null 2>&1 \
            || skip 'binary_id(=fog_node::haproxy) | binary_id(=fog_node::haproxy_mode)' \
                    "haproxy is not installed (apt-get install haproxy): the HAProxy data-plane tests"
        { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } \
            || skip 'binary_id(=marketplace::browser)' \
                    "chromium or chromedriver is missing (apt-get install chromium chromium-driver): the dashboard browser test"
        [ -n "${FOGMARKET_TEST_POSTGRES_URL:-}" ] \
            || skip 'test(/postgres/)' \
                    "FOGMARKET_TEST_POSTGRES_URL is not set (just pg-start prints one): the PostgreSQL variants"
        [ "$(id -u)" -eq 0 ] \
            || skip 'test(/root_gateway/)' \
                    "not running as root: the gateway's user-switch test"
    fi
    filter=()
    if ((${#skipped[@]})); then
        expr="${skipped[0]}"
        for s in "${skipped[@]:1}"; do expr="$expr | $s"; done
        filter=(-E "not ($expr)")
        for r in "${reasons[@]}"; do echo "SKIPPED: $r" >&2; done
    fi
    status=0
    cargo nextest run --workspace --no-fail-fast "${filter[@]}" {{flags}} || status=$?
    for r in "${reasons[@]}"; do echo "SKIPPED: $r" >&2; done
    exit "$status"

# Run a benchmark on release builds (`auction`, `faas`, `proxy`, `offload`); results in bench/results/. Extra flags go to the benchmark
bench name *flags:
    case "{{name}}" in \
        auction|faas|proxy|offload) ;; \
        *) echo "unknown benchmark '{{name}}' (known: auction, faas, proxy, offload)" >&2; exit 2 ;; \
    esac
    if [ "{{name}}" = proxy ]; then \
        missing=""; \
        for tool in wrk haproxy; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done; \
        if [ -n "$missing" ]; then \
            echo "installing$missing with apt-get (the proxy benchmark needs them)" >&2; \
            sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; \
            $sudo apt-get update; \
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $missing; \
        fi; \
    fi
    cargo build --release --workspace --bins
    cargo run --release -p testbed -- bench {{name}} {{flags}}

# The fault campaign on release builds (kill -9 of a host, of the access node's parent, of the marketplace; SIGSTOP of a host; a dead host restarted), each on a fresh local federation under load; results in bench/results/faults.{md,json}. Extra flags go to `testbed faults`
faults *flags:
    cargo build --release --workspace --bins
    cargo run --release -p testbed -- faults {{flags}}

# Format every crate
fmt:
    cargo fmt --all

# Formatting check and clippy with warnings as errors
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Start a local PostgreSQL 15 and print its URL (for DATABASE_URL or FOGMARKET_TEST_POSTGRES_URL)
pg-start:
    @url="$(.ci/pg-start)"; \
    echo "PostgreSQL is up: $url"; \
    echo "  export FOGMARKET_TEST_POSTGRES_URL=$url    # PostgreSQL variants of the tests"; \
    echo "  just run   # with DATABASE_URL=$url to run the marketplace on it"

# With the local federation running (`just run` in another terminal), run the default IoT scenario (about a minute) and print where the report is. Extra flags go to `iot-emulation run`
demo scenario="iot_emulation/scenarios/demo.toml" *flags:
    cargo run --release -p iot_emulation --bin iot-emulation -- run --scenario "{{scenario}}" {{flags}}
