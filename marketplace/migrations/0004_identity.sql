-- Each node's own Ed25519 public key (hex), pinned to its id and name at enrollment. Nodes
-- enrolled before keys existed have none until they register again.
ALTER TABLE nodes ADD COLUMN public_key TEXT;
