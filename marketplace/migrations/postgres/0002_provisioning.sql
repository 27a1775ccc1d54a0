-- Issue 3: where a live function is invoked, and why provisioning failed.
ALTER TABLE placements ADD COLUMN invoke_url TEXT;
ALTER TABLE placements ADD COLUMN error TEXT;
