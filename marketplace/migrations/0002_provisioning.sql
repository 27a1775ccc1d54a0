-- Where a live function is invoked on its node, and why provisioning failed.
ALTER TABLE placements ADD COLUMN invoke_url TEXT;
ALTER TABLE placements ADD COLUMN error TEXT;
