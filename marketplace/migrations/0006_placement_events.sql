-- Where each placement has been: one row per event of an SLA (its host lost, the placement
-- moved to a new host, no node able to take it). Times are unix ms.
CREATE TABLE IF NOT EXISTS placement_events (
    sla_id  TEXT NOT NULL REFERENCES slas(id),
    at_ms   BIGINT NOT NULL,
    node_id TEXT,
    event   TEXT NOT NULL,
    reason  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS placement_events_sla ON placement_events(sla_id, at_ms);
