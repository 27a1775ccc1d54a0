# syntax=docker/dockerfile:1
# A fog node (`fog-node` binary of the crate `fog_node`) with what its embedded FaaS gateway runs.
#
# The build context is the workspace root:
#   docker buildx bake fog-node           (docker-bake.hcl), or
#   docker build -f docker/fog-node.Dockerfile -t ghcr.io/fogmarket/fog-node:0.1.0 .
# The embedded gateway (`[faas] backend = "embedded"`, the default) runs in the fog-node process
# and starts functions from its catalog directory, by default the directory of the fog-node
# executable: so the `fn-<name>` executables of openfaas-functions/ and the catalog manifest
# (faas_gateway/catalog.example.toml as catalog.toml) sit next to it in /opt/fogmarket/bin.
# Run it with `--config FILE` (testbed/k8s mounts one in /etc/fogmarket); never set
# FOG_NODE_CONFIG: fog-node reads every FOG_NODE_* variable as a configuration field.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release \
        -p fog_node --bin fog-node \
        -p fn-echo --bin fn-echo \
        -p fn-spin --bin fn-spin \
        -p fn-figlet --bin fn-figlet \
        -p fn-shasum --bin fn-shasum \
        -p fn-image-resize --bin fn-image-resize \
        -p fn-sentiment --bin fn-sentiment \
    && install -d /out \
    && install -m 0755 target/release/fog-node target/release/fn-echo target/release/fn-spin \
        target/release/fn-figlet target/release/fn-shasum target/release/fn-image-resize \
        target/release/fn-sentiment /out/ \
    && install -m 0644 faas_gateway/catalog.example.toml /out/catalog.toml

FROM debian:bookworm-slim
# ca-certificates unpinned (DL3008): it follows bookworm's updates; a pinned version stops
# building once Debian replaces it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fogmarket \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fogmarket --create-home \
        --shell /usr/sbin/nologin fogmarket
COPY --from=build /out/fog-node /out/catalog.toml /opt/fogmarket/bin/
COPY --from=build /out/fn-echo /out/fn-spin /out/fn-figlet /out/fn-shasum /out/fn-image-resize /out/fn-sentiment /opt/fogmarket/bin/
ENV PATH=/opt/fogmarket/bin:$PATH
WORKDIR /var/lib/fogmarket
EXPOSE 8080
USER 10001:10001
ENTRYPOINT ["/opt/fogmarket/bin/fog-node"]
CMD ["--config", "/etc/fogmarket/fog-node.toml"]
