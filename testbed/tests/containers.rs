//! The container images (`docker/*.Dockerfile`, `docker-bake.hcl`), checked without a Docker
//! engine: each Dockerfile is multi-stage, builds and copies only binaries the workspace has,
//! pins its base images, runs as a non-root user, exposes a port and has an exec-form
//! entrypoint; the images that run the embedded gateway carry every function; the bake file
//! builds every Dockerfile under the tags the Kubernetes manifests use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the testbed crate")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_toml(path: &Path) -> toml::Table {
    toml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every binary of the workspace: `[[bin]]` targets, and the default `src/main.rs` binary named
/// after its package.
fn workspace_binaries() -> BTreeSet<String> {
    let root = workspace_dir();
    let manifest = read_toml(&root.join("Cargo.toml"));
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members");
    let mut bins = BTreeSet::new();
    for member in members {
        let dir = root.join(member.as_str().expect("member path"));
        let package = read_toml(&dir.join("Cargo.toml"));
        let declared: Vec<String> = package
            .get("bin")
            .and_then(|b| b.as_array())
            .map(|b| {
                b.iter()
                    .filter_map(|t| t.get("name").and_then(|n| n.as_str()))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let auto = package
            .get("package")
            .and_then(|p| p.get("autobins"))
            .and_then(|a| a.as_bool())
            .unwrap_or(true);
        if declared.is_empty() && auto && dir.join("src/main.rs").is_file() {
            let name = package["package"]["name"].as_str().expect("package.name");
            bins.insert(name.to_string());
        }
        bins.extend(declared);
    }
    bins
}

fn workspace_version() -> String {
    let manifest = read_toml(&workspace_dir().join("Cargo.toml"));
    manifest["workspace"]["package"]["version"]
        .as_str()
        .expect("workspace.package.version")
        .to_string()
}

/// One instruction of a Dockerfile: keyword (upper case) and the rest, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "a continuation line ends the file");
    out
}

/// A Dockerfile as the checks read it.
struct Dockerfile {
    name: String,
    text: String,
    instructions: Vec<Instruction>,
}

impl Dockerfile {
    fn all() -> Vec<Dockerfile> {
        let dir = workspace_dir().join("docker");
        let mut files: Vec<Dockerfile> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
            .map(|path| {
                let text = read(&path);
                Dockerfile {
                    name: path
                        .file_name()
                        .expect("file name")
                        .to_string_lossy()
                        .to_string(),
                    instructions: instructions(&text),
                    text,
                }
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            [
                "faas-gateway.Dockerfile",
                "fog-node.Dockerfile",
                "marketplace.Dockerfile"
            ]
        );
        files
    }

    fn get(name: &str) -> Dockerfile {
        Dockerfile::all()
            .into_iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no docker/{name}"))
    }

    fn each<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    /// `(image, stage name)` of every `FROM`.
    fn stages(&self) -> Vec<(String, Option<String>)> {
        self.each("FROM")
            .map(|args| {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let stage = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    [_] => None,
                    _ => panic!("{}: FROM {args}: not `FROM image [AS name]`", self.name),
                };
                (words[0].to_string(), stage)
            })
            .collect()
    }

    /// `(stage, source)` of every source of every `COPY --from=stage src... dest`.
    fn copied_from_stages(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for args in self.each("COPY") {
            let words: Vec<&str> = args.split_whitespace().collect();
            let Some(stage) = words.iter().find_map(|w| w.strip_prefix("--from=")) else {
                continue;
            };
            let paths: Vec<&str> = words
                .iter()
                .copied()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let (_, sources) = paths
                .split_last()
                .unwrap_or_else(|| panic!("{}: COPY {args}: no destination", self.name));
            assert!(!sources.is_empty(), "{}: COPY {args}: no source", self.name);
            for source in sources {
                out.push((stage.to_string(), source.to_string()));
            }
        }
        out
    }

    /// The file names of the binaries copied from a build stage (sources without an extension).
    fn copied_binaries(&self) -> BTreeSet<String> {
        self.copied_from_stages()
            .into_iter()
            .map(|(_, source)| base_name(&source).to_string())
            .filter(|name| !name.contains('.'))
            .collect()
    }

    /// The names given to `cargo build --bin`.
    fn built_binaries(&self) -> BTreeSet<String> {
        self.each("RUN")
            .filter(|args| args.contains("cargo build"))
            .flat_map(|args| {
                let words: Vec<&str> = args.split_whitespace().collect();
                words
                    .windows(2)
                    .filter(|w| w[0] == "--bin")
                    .map(|w| w[1].to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[test]
fn every_dockerfile_builds_in_one_stage_and_runs_in_another() {
    for file in Dockerfile::all() {
        let stages = file.stages();
        assert!(stages.len() >= 2, "{}: one stage only", file.name);
        let named: BTreeSet<String> = stages.iter().filter_map(|(_, s)| s.clone()).collect();
        let copies = file.copied_from_stages();
        assert!(
            !copies.is_empty(),
            "{}: nothing copied from a stage",
            file.name
        );
        for (stage, source) in copies {
            assert!(
                named.contains(&stage),
                "{}: COPY --from={stage} {source}: no stage is named `{stage}`",
                file.name
            );
        }
        let (runtime, _) = stages.last().expect("a stage");
        assert_eq!(runtime, "debian:bookworm-slim", "{}", file.name);
        assert_eq!(stages[0].0, "rust:1.95-bookworm", "{}", file.name);
    }
}

#[test]
fn every_base_image_is_pinned_by_a_tag_other_than_latest() {
    for file in Dockerfile::all() {
        for (image, _) in file.stages() {
            let pinned = image.contains('@')
                || image.rsplit_once(':').is_some_and(|(name, tag)| {
                    !name.is_empty() && !tag.contains('/') && tag != "latest"
                });
            assert!(pinned, "{}: FROM {image} has no pinned tag", file.name);
        }
    }
}

#[test]
fn every_copied_binary_is_a_workspace_binary_built_in_the_build_stage() {
    let workspace = workspace_binaries();
    for file in Dockerfile::all() {
        let built = file.built_binaries();
        assert!(!built.is_empty(), "{}: no `cargo build --bin`", file.name);
        for bin in &built {
            assert!(
                workspace.contains(bin),
                "{}: --bin {bin} is not a binary of the workspace ({workspace:?})",
                file.name
            );
        }
        for bin in file.copied_binaries() {
            assert!(
                workspace.contains(&bin),
                "{}: copies `{bin}`, which no crate of the workspace builds ({workspace:?})",
                file.name
            );
            assert!(
                built.contains(&bin),
                "{}: copies `{bin}` without `--bin {bin}`",
                file.name
            );
        }
        for (_, source) in file.copied_from_stages() {
            let name = base_name(&source);
            if name.contains('.') {
                // The only data file: the gateway's catalog manifest, from the repository.
                assert_eq!(name, "catalog.toml", "{}: copies `{source}`", file.name);
                let origin = "faas_gateway/catalog.example.toml";
                assert!(
                    file.text.contains(origin),
                    "{}: catalog.toml not from {origin}",
                    file.name
                );
                assert!(
                    workspace_dir().join(origin).is_file(),
                    "{origin} is missing"
                );
            }
        }
    }
}

#[test]
fn the_images_of_the_embedded_gateway_carry_every_function_next_to_their_server() {
    let functions: BTreeSet<String> = workspace_binaries()
        .into_iter()
        .filter(|b| b.starts_with("fn-"))
        .collect();
    assert!(functions.len() >= 6, "{functions:?}");
    for (name, server) in [
        ("fog-node.Dockerfile", "fog-node"),
        ("faas-gateway.Dockerfile", "faas-gateway"),
    ] {
        let file = Dockerfile::get(name);
        let copied = file.copied_binaries();
        let missing: Vec<&String> = functions.difference(&copied).collect();
        assert!(missing.is_empty(), "{name}: misses {missing:?}");
        // The default catalog is the directory of the server's executable.
        let destinations: BTreeSet<&str> = file
            .each("COPY")
            .filter(|args| args.contains("--from="))
            .filter_map(|args| args.split_whitespace().last())
            .collect();
        assert_eq!(
            destinations,
            BTreeSet::from(["/opt/fogmarket/bin/"]),
            "{name}"
        );
        let entrypoint = file.each("ENTRYPOINT").last().expect("ENTRYPOINT");
        assert_eq!(
            entrypoint,
            format!("[\"/opt/fogmarket/bin/{server}\"]"),
            "{name}"
        );
    }
}

#[test]
fn every_image_runs_as_a_non_root_user_exposes_a_port_and_has_an_exec_entrypoint() {
    for file in Dockerfile::all() {
        let user = file
            .each("USER")
            .last()
            .unwrap_or_else(|| panic!("{}: no USER", file.name));
        let uid = user.split(':').next().unwrap_or(user);
        assert!(uid != "root" && uid != "0", "{}: USER {user}", file.name);
        assert_eq!(
            user, "10001:10001",
            "{}: the uid testbed/k8s runs as",
            file.name
        );
        let ports: Vec<&str> = file.each("EXPOSE").collect();
        assert!(!ports.is_empty(), "{}: no EXPOSE", file.name);
        let entrypoint = file
            .each("ENTRYPOINT")
            .last()
            .unwrap_or_else(|| panic!("{}: no ENTRYPOINT", file.name));
        let exec: Vec<String> = serde_json::from_str(entrypoint).unwrap_or_else(|e| {
            panic!(
                "{}: ENTRYPOINT {entrypoint} is not exec form: {e}",
                file.name
            )
        });
        let program = base_name(&exec[0]).to_string();
        assert!(
            file.copied_binaries().contains(&program),
            "{}: runs `{program}`, not copied",
            file.name
        );
        assert!(
            file.text.contains("ca-certificates"),
            "{}: no ca-certificates in the runtime image",
            file.name
        );
        let ignore = workspace_dir().join(format!("docker/{}.dockerignore", file.name));
        assert!(
            read(&ignore).lines().any(|l| l.trim() == "target"),
            "{}: target/ is not ignored",
            ignore.display()
        );
    }
}

#[test]
fn the_fog_node_image_never_sets_fog_node_variables() {
    // fog-node reads every FOG_NODE_* variable as a configuration field (FOG_NODE_CONFIG too).
    let file = Dockerfile::get("fog-node.Dockerfile");
    for env in file.each("ENV") {
        assert!(!env.contains("FOG_NODE_"), "ENV {env}");
    }
    let cmd = file.each("CMD").last().expect("CMD");
    assert_eq!(cmd, r#"["--config", "/etc/fogmarket/fog-node.toml"]"#);
}

/// `target "name" { ... dockerfile = "..." ... tags = [...] }` of docker-bake.hcl.
fn bake_targets(text: &str) -> BTreeMap<String, (Option<String>, Vec<String>)> {
    let mut targets = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("target \"") {
            let name = rest.split('"').next().expect("target name").to_string();
            targets.insert(name.clone(), (None, Vec::new()));
            current = Some(name);
        } else if line == "}" {
            current = None;
        } else if let (Some(name), Some((key, value))) = (&current, line.split_once('=')) {
            let entry = targets.get_mut(name).expect("current target");
            let strings: Vec<String> = value
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            match key.trim() {
                "dockerfile" => entry.0 = strings.first().cloned(),
                "tags" => entry.1 = strings,
                _ => {}
            }
        }
    }
    targets
}

fn bake_variable(text: &str, name: &str) -> String {
    let start = text
        .find(&format!("variable \"{name}\""))
        .unwrap_or_else(|| panic!("no variable {name}"));
    text[start..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("default"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap_or_else(|| panic!("variable {name} has no default"))
        .to_string()
}

#[test]
fn the_bake_file_builds_every_dockerfile_under_the_tags_the_manifests_use() {
    let text = read(&workspace_dir().join("docker-bake.hcl"));
    let targets = bake_targets(&text);
    let group = text
        .split("group \"default\"")
        .nth(1)
        .and_then(|g| g.split('}').next())
        .expect("group default");
    let mut named = BTreeSet::new();
    for (target, (dockerfile, tags)) in &targets {
        let Some(dockerfile) = dockerfile else {
            continue;
        };
        assert!(
            workspace_dir().join(dockerfile).is_file(),
            "{target}: {dockerfile} is missing"
        );
        assert!(
            group.contains(&format!("\"{target}\"")),
            "group default misses {target}"
        );
        assert_eq!(
            tags,
            &[format!("${{REGISTRY}}/{target}:${{TAG}}")],
            "{target}"
        );
        named.insert(dockerfile.trim_start_matches("docker/").to_string());
    }
    let all: BTreeSet<String> = Dockerfile::all().into_iter().map(|f| f.name).collect();
    assert_eq!(
        named, all,
        "docker-bake.hcl must name every docker/*.Dockerfile"
    );
    assert_eq!(bake_variable(&text, "TAG"), workspace_version());

    // Every Fogmarket image the Kubernetes manifests run is a bake target, at the bake's tag.
    let registry = bake_variable(&text, "REGISTRY");
    let k8s = workspace_dir().join("testbed/k8s");
    let mut manifests = vec![read(&k8s.join("marketplace.yaml"))];
    manifests.extend(
        std::fs::read_dir(k8s.join("fog-nodes"))
            .expect("testbed/k8s/fog-nodes")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| read(&p)),
    );
    let mut used = BTreeSet::new();
    for text in &manifests {
        for image in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
        {
            if let Some(rest) = image.strip_prefix(&format!("{registry}/")) {
                let (name, tag) = rest.split_once(':').unwrap_or((rest, ""));
                assert!(
                    targets.contains_key(name),
                    "{image}: no bake target `{name}`"
                );
                assert_eq!(tag, workspace_version(), "{image}");
                used.insert(name.to_string());
            }
        }
    }
    assert_eq!(
        used,
        BTreeSet::from(["fog-node".to_string(), "marketplace".to_string()])
    );
}
