-- Clients of the client API. A client holds one token at a time; only the token's SHA-256
-- (hex) is stored, never the token, plus its first characters to tell tokens apart in
-- listings. A revoked client keeps its row (and id) so its placements stay attributable and
-- it can be given a new token.
CREATE TABLE IF NOT EXISTS clients (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL UNIQUE,
    token_hash          TEXT NOT NULL UNIQUE,
    token_prefix        TEXT NOT NULL,
    created_at_ms       BIGINT NOT NULL,
    token_created_at_ms  BIGINT NOT NULL,
    revoked_at_ms       BIGINT
);

-- The client that placed an SLA (NULL: placed while the client API was open), and the IP
-- address the placement request came from (what open mode counts limits against).
ALTER TABLE slas ADD COLUMN owner TEXT;
ALTER TABLE slas ADD COLUMN client_addr TEXT;
CREATE INDEX IF NOT EXISTS slas_owner ON slas(owner);
CREATE INDEX IF NOT EXISTS slas_client_addr ON slas(client_addr);
