-- An index for listing the most recently started auctions (the dashboard).
CREATE INDEX IF NOT EXISTS auctions_started ON auctions(started_at_ms);
