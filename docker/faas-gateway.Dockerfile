# syntax=docker/dockerfile:1
# The embedded OpenFaaS-compatible gateway as a process of its own (`faas-gateway` binary of the
# crate `faas_gateway`), with the functions it runs.
#
# The build context is the workspace root:
#   docker buildx bake faas-gateway       (docker-bake.hcl), or
#   docker build -f docker/faas-gateway.Dockerfile -t ghcr.io/fogmarket/faas-gateway:0.1.0 .
# Its catalog is the directory of the executable, /opt/fogmarket/bin: the `fn-<name>` executables
# of openfaas-functions/ and faas_gateway/catalog.example.toml as catalog.toml. As a non-root user
# it runs functions as itself, with rlimits unless a writable cgroup v2 is delegated to it.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release \
        -p faas_gateway --bin faas-gateway \
        -p fn-echo --bin fn-echo \
        -p fn-spin --bin fn-spin \
        -p fn-figlet --bin fn-figlet \
        -p fn-shasum --bin fn-shasum \
        -p fn-image-resize --bin fn-image-resize \
        -p fn-sentiment --bin fn-sentiment \
    && install -d /out \
    && install -m 0755 target/release/faas-gateway target/release/fn-echo target/release/fn-spin \
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
COPY --from=build /out/faas-gateway /out/catalog.toml /opt/fogmarket/bin/
COPY --from=build /out/fn-echo /out/fn-spin /out/fn-figlet /out/fn-shasum /out/fn-image-resize /out/fn-sentiment /opt/fogmarket/bin/
ENV PATH=/opt/fogmarket/bin:$PATH \
    FAAS_GATEWAY_LISTEN=0.0.0.0:8080
WORKDIR /var/lib/fogmarket
EXPOSE 8080
USER 10001:10001
ENTRYPOINT ["/opt/fogmarket/bin/faas-gateway"]
