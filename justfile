# Fogmarket tasks. `just --list` shows them; README.md explains them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @just --list

# Start the marketplace on 127.0.0.1:8000 and the fog tree of a topology (release builds); Ctrl-C stops everything. Extra flags (e.g. --tls) go to `testbed run`
run topology="testbed/topologies/local.toml" *flags:
    cargo build --release --workspace --bins
    cargo run --release -p testbed -- run --topology "{{topology}}" {{flags}}

# Build every binary, then run every test: unit, in-process and multi-process (nextest when installed)
test:
    cargo build --workspace --bins
    if command -v cargo-nextest >/dev/null 2>&1; then \
        cargo nextest run --workspace --no-fail-fast; \
    else \
        echo "cargo-nextest not found, using cargo test" >&2; \
        cargo test --workspace --no-fail-fast; \
    fi

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
