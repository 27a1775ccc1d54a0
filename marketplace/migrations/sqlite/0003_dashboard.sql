-- Issue 5: the dashboard lists the most recently started auctions.
CREATE INDEX IF NOT EXISTS auctions_started ON auctions(started_at_ms);
