//! The Kubernetes tree `testbed/k8s/`: the committed fog-node manifests are exactly what
//! `testbed k8s` makes of the local topology (so they never drift from the generator or the
//! topology), the hand-written kustomization agrees with the generator, and a real `fog-node`
//! starts on a generated configuration with its enrollment secret from the environment, as in
//! its pod. The last test runs the `fog-node` binary: build it first (`just test` does).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use testbed::k8s::{self, K8sOptions};
use testbed::{Topology, TopologyFileExt};

const REGENERATE: &str = "cargo run -p testbed -- k8s --topology testbed/topologies/local.toml \
                          --out testbed/k8s/fog-nodes";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What `testbed k8s` with its defaults makes of `testbed/topologies/local.toml`.
fn generated() -> BTreeMap<String, String> {
    let topology =
        Topology::from_file(crate_dir().join("topologies/local.toml")).expect("topology");
    k8s::generate(&topology, &K8sOptions::new("local.toml")).expect("manifests")
}

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}; make it with `{REGENERATE}`", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .to_string();
            let text = std::fs::read_to_string(&path).expect("committed file");
            (name, text)
        })
        .collect()
}

#[test]
fn the_committed_fog_node_manifests_are_what_the_generator_makes_of_the_local_topology() {
    let committed = read_dir(&crate_dir().join("k8s/fog-nodes"));
    let regenerated = generated();
    // Also through the writer, into a fresh directory, as the command does.
    let dir = tempfile::tempdir().expect("temp dir");
    k8s::write(dir.path(), &regenerated).expect("write");
    assert_eq!(read_dir(dir.path()), regenerated);

    let names = |files: &BTreeMap<String, String>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&regenerated),
        "testbed/k8s/fog-nodes has other files than the generator makes: run `{REGENERATE}`"
    );
    for (name, text) in &regenerated {
        assert!(
            committed[name] == *text,
            "testbed/k8s/fog-nodes/{name} differs from what the generator makes: run `{REGENERATE}`"
        );
    }
}

#[test]
fn the_kustomization_matches_the_generators_namespace_secret_and_image_tag() {
    let text = std::fs::read_to_string(crate_dir().join("k8s/kustomization.yaml"))
        .expect("kustomization.yaml");
    let kustomization: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    assert_eq!(
        kustomization["namespace"].as_str(),
        Some(k8s::DEFAULT_NAMESPACE)
    );
    let resources: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(resources.contains(&"fog-nodes"), "{resources:?}");
    let (secret, key) = k8s::ENROLLMENT_SECRET;
    let generator = kustomization["secretGenerator"]
        .as_sequence()
        .expect("secretGenerator")
        .iter()
        .find(|g| g["name"].as_str() == Some(secret))
        .unwrap_or_else(|| panic!("no secretGenerator makes `{secret}`"));
    let literals = generator["literals"].as_sequence().expect("literals");
    assert!(
        literals.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.starts_with(&format!("{key}=")))),
        "`{secret}` has no key `{key}`"
    );
    let fog_node_image = kustomization["images"]
        .as_sequence()
        .expect("images")
        .iter()
        .find(|i| i["name"].as_str() == Some(k8s::FOG_NODE_IMAGE))
        .expect("the fog node's image");
    assert_eq!(
        fog_node_image["newTag"].as_str(),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_real_fog_node_starts_on_a_generated_config_with_the_secret_from_its_environment() {
    let bin_dir = testbed::default_bin_dir().expect("bin dir");
    let fog_node = testbed::find_binary(&bin_dir, "fog-node").expect("fog-node is built");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join(k8s::CONFIG_FILE);
    std::fs::write(&config, &generated()["fog-edge-farm.toml"]).expect("config");

    let mut command = Command::new(fog_node);
    for (key, _) in std::env::vars() {
        if key.starts_with("FOG_NODE_") {
            command.env_remove(key);
        }
    }
    // As its pod does, except for the address and the state directory, which are the pod's own.
    let mut child = command
        .arg("--config")
        .arg(&config)
        .env("FOG_NODE_ENROLLMENT_SECRET", "from-the-secret")
        .env("FOG_NODE_LISTEN", "127.0.0.1:0")
        .env("FOG_NODE_STATE_DIR", dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fog-node");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let output = child.wait_with_output().expect("fog-node's end");
    let line = line.unwrap_or_else(|_| {
        panic!(
            "fog-node printed nothing in 30 s; stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(
        line.trim_end(),
        "listening on http://fog-edge-farm.fogmarket.svc:8080",
        "stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
