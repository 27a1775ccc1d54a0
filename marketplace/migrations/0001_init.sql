-- The marketplace schema: its own settings (meta), fog nodes, SLAs, auctions, bids and
-- placements. Ids are TEXT (UUID strings), times are unix ms, JSON documents are TEXT,
-- booleans are 0/1 integers; the same SQL runs on SQLite and PostgreSQL.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS nodes (
    id                    TEXT PRIMARY KEY NOT NULL,
    name                  TEXT NOT NULL UNIQUE,
    owner                 TEXT NOT NULL,
    tags                  TEXT NOT NULL,
    parent_name           TEXT,
    url                   TEXT NOT NULL,
    cpu_millis            BIGINT NOT NULL,
    memory_bytes          BIGINT NOT NULL,
    reserved_cpu_millis   BIGINT NOT NULL DEFAULT 0,
    reserved_memory_bytes BIGINT NOT NULL DEFAULT 0,
    last_seen_ms          BIGINT NOT NULL,
    alive                 BIGINT NOT NULL DEFAULT 0,
    registered_at_ms      BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS slas (
    id            TEXT PRIMARY KEY NOT NULL,
    body          TEXT NOT NULL,
    target_node   TEXT NOT NULL,
    max_price     DOUBLE PRECISION,
    nodes_wanted  BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS auctions (
    id             TEXT PRIMARY KEY NOT NULL,
    sla_id         TEXT NOT NULL REFERENCES slas(id),
    rule           TEXT NOT NULL,
    target_node    TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT,
    outcome        TEXT NOT NULL DEFAULT 'running',
    refusals       TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS auctions_sla ON auctions(sla_id);

CREATE TABLE IF NOT EXISTS bids (
    id             TEXT NOT NULL,
    auction_id     TEXT NOT NULL REFERENCES auctions(id),
    node_id        TEXT NOT NULL,
    node_name      TEXT NOT NULL,
    price          DOUBLE PRECISION NOT NULL,
    latency_ms     DOUBLE PRECISION NOT NULL,
    utilisation    DOUBLE PRECISION NOT NULL,
    body           TEXT NOT NULL,
    won            BIGINT NOT NULL DEFAULT 0,
    refused_accept BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (auction_id, id)
);

CREATE TABLE IF NOT EXISTS placements (
    sla_id        TEXT NOT NULL REFERENCES slas(id),
    node_id       TEXT NOT NULL,
    bid_id        TEXT NOT NULL,
    auction_id    TEXT NOT NULL,
    price         DOUBLE PRECISION NOT NULL,
    state         TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    ends_at_ms    BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (sla_id, node_id)
);
CREATE INDEX IF NOT EXISTS placements_state_ends ON placements(state, ends_at_ms);
