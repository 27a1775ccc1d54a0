# syntax=docker/dockerfile:1
# The marketplace (`marketplace` binary of the crate `marketplace`).
#
# The build context is the workspace root:
#   docker buildx bake marketplace        (docker-bake.hcl), or
#   docker build -f docker/marketplace.Dockerfile -t ghcr.io/fogmarket/marketplace:0.1.0 .
# In a container it listens on 0.0.0.0:8000, so client API tokens are required (`--client-auth
# auto`); it needs FOGMARKET_ENROLLMENT_SECRET, and DATABASE_URL for PostgreSQL (default: SQLite
# in /var/lib/fogmarket). `marketplace token create --client NAME` makes a client token.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p marketplace --bin marketplace \
    && install -D -m 0755 target/release/marketplace /out/marketplace

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
COPY --from=build /out/marketplace /usr/local/bin/marketplace
WORKDIR /var/lib/fogmarket
ENV FOGMARKET_LISTEN=0.0.0.0:8000
EXPOSE 8000
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/marketplace"]
