# Fogmarket tasks. `just --list` shows them; README.md explains them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @just --list

# Start the marketplace on 127.0.0.1:8000 and the fog tree of a topology (release builds); Ctrl-C stops everything. Extra flags (e.g. --tls) go to `testbed run`
run topology="testbed/topologies/local.toml" *flags:
    cargo build --release --workspace --bins
    cargo run --release -p testbed -- run --topology "{{topology}}" {{flags}}

# Build every binary, then run every test: unit, in-process and multi-process, then (without flags) the Kubernetes manifests, the Dockerfiles, the README benchmark table against bench/results, the deployment package and `just enos-local`. Tests whose tool is missing (HAProxy, Chromium, PostgreSQL, root) are reported as skipped; under CI nothing is skipped
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
    # The suites beyond cargo's run only in a full run (no flags); they run even when a test failed.
    if [ -z "{{flags}}" ]; then
        # The Kubernetes manifests, rendered and validated offline; run even when a test failed.
        "{{just_executable()}}" k8s-validate || { echo "FAILED: just k8s-validate" >&2; status=1; }
        "{{just_executable()}}" images-lint || { echo "FAILED: just images-lint" >&2; status=1; }
        # The README's benchmark table must be the one the committed result files give.
        target/debug/testbed bench table --check \
            || { echo "FAILED: the README's benchmark table is stale (just bench-table rewrites it)" >&2; status=1; }
        # The EnosLib deployment package: its unit tests, then the whole deployment on network
        # namespaces of this machine (root only).
        FOGMARKET_BIN_DIR=target/debug testbed/enos/.venv/bin/python -m pytest -q -p no:cacheprovider testbed/enos/tests \
            || { echo "FAILED: the deployment package's tests (testbed/enos/tests)" >&2; status=1; }
        if [ "$(id -u)" -eq 0 ]; then
            "{{just_executable()}}" enos-local testbed/topologies/local.toml iot_emulation/scenarios/enos-local.toml debug \
                || { echo "FAILED: just enos-local" >&2; status=1; }
        elif [ -n "${CI:-}" ]; then
            echo "FAILED: just enos-local needs root (network namespaces)" >&2; status=1
        else
            reasons+=("not running as root: just enos-local (the deployment on network namespaces)")
        fi
    else
        reasons+=("a filtered run (just test {{flags}}): the manifests, the deployment package and just enos-local")
    fi
    for r in "${reasons[@]}"; do echo "SKIPPED: $r" >&2; done
    exit "$status"

# Run a benchmark on release builds (`auction`, `faas`, `proxy`, `offload` with scenarios demo, issue48, hot3, burst, far, shift, `footprint`, `sim`); results in bench/results/. Extra flags go to the benchmark
bench name *flags:
    case "{{name}}" in \
        auction|faas|proxy|offload|footprint|sim) ;; \
        *) echo "unknown benchmark '{{name}}' (known: auction, faas, proxy, offload, footprint, sim)" >&2; exit 2 ;; \
    esac
    if [ "{{name}}" = sim ]; then \
        cargo build --release -p simulator; \
        target/release/simulator bench {{flags}}; \
        exit 0; \
    fi
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

# Rewrite README.md's table of benchmark results (between its bench-table markers) from the files in bench/results/; `--check` changes nothing and fails when the table is stale
bench-table *flags:
    cargo run --release -p testbed -- bench table {{flags}}

# The fault campaign on release builds (kill -9 of a host, of the access node's parent, of the marketplace; SIGSTOP of a host; a dead host restarted), each on a fresh local federation under load; results in bench/results/faults.{md,json}. Extra flags go to `testbed faults`
faults *flags:
    cargo build --release --workspace --bins
    cargo run --release -p testbed -- faults {{flags}}

# The Python environment of the deployment package testbed/enos (EnosLib, kubernetes-validate, pytest); made once, remade when its pyproject.toml changes
enos-venv:
    #!/usr/bin/env bash
    set -euo pipefail
    venv=testbed/enos/.venv
    stamp="$venv/.pyproject.sha256"
    want="$(sha256sum testbed/enos/pyproject.toml | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then exit 0; fi
    echo "making the Python environment $venv (EnosLib, kubernetes-validate)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e 'testbed/enos[test]'
    echo "$want" > "$stamp"

# Render the Kubernetes manifests (kubectl kustomize testbed/k8s) and validate them offline and strictly against the Kubernetes 1.31.0 schemas (kubernetes-validate); needs kubectl
k8s-validate: enos-venv
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v kubectl >/dev/null 2>&1; then
        echo "k8s-validate: kubectl is not installed; it renders testbed/k8s (kubectl kustomize, kustomize v5: kubectl 1.27 or later)" >&2
        exit 1
    fi
    rendered="$(mktemp --suffix=.yaml)"
    trap 'rm -f "$rendered"' EXIT
    kubectl kustomize testbed/k8s > "$rendered"
    # --quiet prints only failures and warnings; a warning (a kind without a schema) fails too.
    if ! report="$(testbed/enos/.venv/bin/kubernetes-validate --kubernetes-version 1.31.0 --strict --quiet "$rendered" 2>&1)" \
        || [ -n "$report" ]; then
        echo "$report" >&2
        echo "k8s-validate: testbed/k8s does not validate (warnings count as errors)" >&2
        exit 1
    fi
    echo "testbed/k8s: $(grep -c '^kind:' "$rendered") objects rendered, valid for Kubernetes 1.31.0 (strict)" >&2

# The federation deployed by EnosLib on this machine: one network namespace per host (marketplace, IoT, each fog node), each with its own sshd, then the same install, start, scenario, collect and teardown steps as `just g5k`. Needs root and openssh-server (installed if missing). `profile=debug` uses the debug build
enos-local topology="testbed/topologies/local.toml" scenario="iot_emulation/scenarios/enos-local.toml" profile="release" *flags: enos-venv
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" -ne 0 ]; then echo "enos-local makes network namespaces: run it as root" >&2; exit 1; fi
    if [ ! -x /usr/sbin/sshd ]; then
        echo "installing openssh-server with apt-get (each local host runs its own sshd)" >&2
        apt-get update -qq >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >&2
        # The package starts the machine's own sshd; the run starts one per namespace.
        systemctl disable --now ssh >/dev/null 2>&1 || service ssh stop >/dev/null 2>&1 || true
    fi
    if [ "{{profile}}" = release ]; then cargo build --release --workspace --bins; else cargo build --workspace --bins; fi
    export ANSIBLE_HOST_KEY_CHECKING=False
    testbed/enos/.venv/bin/python -m fogmarket_enos local --topology "{{topology}}" --scenario "{{scenario}}" \
        --bin-dir "target/{{profile}}" --require-sent 100 --require-ok 0.99 {{flags}}

# Grid'5000: reserve one machine per host of the topology (or VMs with --vms), install and start the federation, shape the links with NetemHTB, run the scenario and bring the results back to .run/g5k-<time>. Run it from a Grid'5000 frontend (or with ~/.python-grid5000.yaml); flags: --cluster, --walltime, --reservation, --job-name, --vms, --backend openfaas, --database sqlite, --jaeger
g5k topology="testbed/topologies/local.toml" scenario="iot_emulation/scenarios/enos-local.toml" *flags: enos-venv
    cargo build --release --workspace --bins
    testbed/enos/.venv/bin/python -m fogmarket_enos g5k --topology "{{topology}}" --scenario "{{scenario}}" --bin-dir target/release {{flags}}

# Release the Grid'5000 job of `just g5k` (flags: --job-name, --cluster)
g5k-destroy *flags: enos-venv
    testbed/enos/.venv/bin/python -m fogmarket_enos g5k-destroy {{flags}}

# Lint the container images' Dockerfiles (docker/*.Dockerfile) with hadolint, offline
images-lint: enos-venv
    testbed/enos/.venv/bin/hadolint docker/*.Dockerfile
    @echo "docker/: $(ls docker/*.Dockerfile | wc -l) Dockerfiles pass hadolint" >&2

# Reproduce a published result on the simulator: `giraff` compares placement strategies on GIRAFF-like trees (about 663 nodes, 10 seeds; `--quick`: about 100 nodes, 5 seeds); results in bench/results/giraff.{json,md,svg}
reproduce what *flags:
    cargo build --release -p simulator
    target/release/simulator reproduce {{what}} {{flags}}

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
