//! The node's side of the federation's one HTTP client ([`signed_http`]): every call to the
//! marketplace and to peers is signed with the node's own key, timed out, traced and capped.
//! Also where the node keeps that key ([`load_or_create_key`]), and the names of the headers
//! nodes put on each other's requests besides the signature.

pub use signed_http::{Call, CallError, ClientOptions, SignedClient, Signer};

use model::auth::SecretKey;
use std::path::Path;

/// Header of the HAProxy-mode peer token: `<senderNodeId>.<window>.<hex>`
/// ([`model::auth::peer_token`]).
pub const PEER_HEADER: &str = "x-fogmarket-peer";

/// The sending node's id on requests that carry no signature (the latency probes).
pub const FROM_HEADER: &str = "x-fogmarket-from";

/// File under `state_dir` holding the node's Ed25519 seed (hex), readable by its owner only.
pub const KEY_FILE: &str = "node.key";

/// The node's key: read from `state_dir/node.key`, or made and saved there on first start (so
/// a restarted node keeps the identity the marketplace pinned). Without a `state_dir` the key
/// lives as long as the process, like the rest of the node's state.
pub fn load_or_create_key(state_dir: Option<&Path>) -> anyhow::Result<SecretKey> {
    let Some(dir) = state_dir else {
        return Ok(SecretKey::generate(&mut rand::rng()));
    };
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => SecretKey::from_hex(text.trim())
            .map_err(|e| anyhow::anyhow!("{} is not a node key: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate(&mut rand::rng());
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            write_private(&path, key.to_hex().as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_its_key_across_restarts_in_its_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(Some(dir.path())).unwrap();
        let again = load_or_create_key(Some(dir.path())).unwrap();
        assert_eq!(first.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "the key file is readable by others: {mode:o}"
            );
        }
    }

    #[test]
    fn a_damaged_key_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        let e = load_or_create_key(Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(KEY_FILE), "{e}");
    }
}
