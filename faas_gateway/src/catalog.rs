//! The function catalog: what the gateway may run, as the operator configured it. A client picks
//! an image, never a program.
//!
//! An OpenFaaS image names a function by its last path segment without tag or digest
//! (`ghcr.io/acme/echo:1.2` -> `echo`). Without `envProcess` the image runs as the HTTP replica
//! `<dir>/fn-<name>`. The optional manifest `<dir>/catalog.toml` declares, per image, named
//! entry points (program, arguments, mode); `envProcess` may only name one of them:
//!
//! ```toml
//! [images.shasum.entry_points.sha256]
//! command = ["fn-shasum", "--stdin"]  # program, then arguments (no shell)
//! mode = "classic"                    # classic (default): a process per request; http: replicas
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use model::exec::EntryPointName;
use serde::Deserialize;

/// The manifest's file name inside the catalog directory.
pub const MANIFEST: &str = "catalog.toml";

/// Where function executables live unless configured: the directory of the current executable,
/// or its parent when that is a `deps` directory (so `target/debug/` under `cargo test`).
pub fn default_catalog_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("."));
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// How an entry point runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryMode {
    /// One process per request (classic watchdog): body on stdin, stdout as the answer.
    #[default]
    Classic,
    /// Long-lived replicas serving HTTP on `$PORT` (of-watchdog `mode=http`).
    Http,
}

/// One entry point an image declares, as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryPoint {
    /// Program, then arguments. A program without `/` is looked up in the catalog directory,
    /// then in the gateway's `PATH`; a relative path is relative to the catalog directory.
    pub command: Vec<String>,
    #[serde(default)]
    pub mode: EntryMode,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageManifest {
    #[serde(default)]
    entry_points: BTreeMap<String, EntryPoint>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    images: BTreeMap<String, ImageManifest>,
}

/// What a deployment runs, resolved from its image and `envProcess`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub mode: EntryMode,
    /// The entry point's name; `None` for the image's default `fn-<name>` replica.
    pub entry_point: Option<EntryPointName>,
}

impl Resolved {
    /// The command line as text (the `fprocess` a classic process sees).
    pub fn command_line(&self) -> String {
        let mut words = vec![self.program.display().to_string()];
        words.extend(self.args.iter().cloned());
        shell_words::join(words)
    }
}

/// A bad manifest: the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("catalog manifest {path}: {reason}")]
pub struct CatalogError {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
    /// Entry points by image name, then by entry-point name.
    images: BTreeMap<String, BTreeMap<EntryPointName, EntryPoint>>,
}

impl Catalog {
    /// A catalog of `fn-<name>` executables only, without declared entry points.
    pub fn new(dir: PathBuf) -> Self {
        Catalog {
            dir,
            images: BTreeMap::new(),
        }
    }

    /// The catalog of `dir` with the entry points of `dir/catalog.toml` when it exists.
    pub fn load(dir: PathBuf) -> Result<Self, CatalogError> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Catalog::new(dir)),
            Err(e) => {
                return Err(CatalogError {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let catalog = Catalog::from_manifest(dir, &text).map_err(|reason| CatalogError {
            path: path.clone(),
            reason,
        })?;
        Ok(catalog)
    }

    /// Parses manifest text; the error names the key.
    pub fn from_manifest(dir: PathBuf, text: &str) -> Result<Self, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut images = BTreeMap::new();
        for (image, m) in manifest.images {
            if image.is_empty() || image != model::sla::image_function_name(&image) {
                return Err(format!(
                    "images.{image}: an image is named by its last path segment without tag                      (e.g. `shasum`)"
                ));
            }
            let mut entries = BTreeMap::new();
            for (name, entry) in m.entry_points {
                let key = format!("images.{image}.entry_points.{name}");
                let parsed = EntryPointName::parse(&name).map_err(|e| format!("{key}: {e}"))?;
                if entry.command.first().is_none_or(|p| p.is_empty()) {
                    return Err(format!("{key}.command: needs at least a program"));
                }
                entries.insert(parsed, entry);
            }
            images.insert(image, entries);
        }
        Ok(Catalog { dir, images })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What a deployment of `image` runs: its `entry_point` when given (it must be one the
    /// image declares), else the image's `fn-<name>` HTTP replica. The error starts with the
    /// field it is about (`envProcess:` or `image`).
    pub fn resolve(
        &self,
        image: &str,
        entry_point: Option<&EntryPointName>,
    ) -> Result<Resolved, String> {
        let name = model::sla::image_function_name(image);
        let Some(wanted) = entry_point else {
            return self.resolve_image(image).map(|program| Resolved {
                program,
                args: Vec::new(),
                mode: EntryMode::Http,
                entry_point: None,
            });
        };
        let declared = self.images.get(name);
        let Some(entry) = declared.and_then(|d| d.get(wanted)) else {
            let names: Vec<&str> = declared
                .into_iter()
                .flat_map(|d| d.keys())
                .map(EntryPointName::as_str)
                .collect();
            return Err(format!(
                "envProcess: {:?} is not an entry point of image {image:?} (declared: {})",
                wanted.as_str(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        };
        let (program, args) = entry
            .command
            .split_first()
            .ok_or_else(|| format!("envProcess: entry point {wanted} has no program"))?;
        let program = self.resolve_program(program).ok_or_else(|| {
            format!(
                "envProcess: entry point {wanted} of image {image:?}: program {program:?} not                  found in the catalog {} nor in PATH",
                self.dir.display()
            )
        })?;
        Ok(Resolved {
            program,
            args: args.to_vec(),
            mode: entry.mode,
            entry_point: Some(wanted.clone()),
        })
    }

    /// The executable for `image`, or `Err` with the names that are available.
    pub fn resolve_image(&self, image: &str) -> Result<PathBuf, String> {
        let name = model::sla::image_function_name(image);
        let path = self.dir.join(format!("fn-{name}"));
        if !name.is_empty() && is_executable(&path) {
            Ok(path)
        } else {
            let available = self.available();
            Err(format!(
                "image {image:?}: no function {name:?} in the catalog {} (available: {})",
                self.dir.display(),
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ))
        }
    }

    /// Every function name (`fn-<name>` executable) in the catalog directory, sorted.
    pub fn available(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let name = file.strip_prefix("fn-")?;
                (!name.is_empty() && !name.contains('.') && is_executable(&e.path()))
                    .then(|| name.to_string())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Resolves an entry point's program (operator configuration): an absolute path is used as
    /// is, a relative path is relative to the catalog directory; a bare name is looked up in
    /// the catalog directory first, then in `PATH`.
    fn resolve_program(&self, program: &str) -> Option<PathBuf> {
        if program.contains('/') {
            let p = self.dir.join(program);
            return is_executable(&p).then_some(p);
        }
        let in_catalog = self.dir.join(program);
        if is_executable(&in_catalog) {
            return Some(in_catalog);
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| is_executable(p))
        })
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch_exec(dir: &Path, name: &str) {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn an_image_resolves_by_its_last_segment_and_unknown_ones_list_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        touch_exec(dir.path(), "fn-echo");
        touch_exec(dir.path(), "fn-spin");
        std::fs::write(dir.path().join("fn-echo.d"), "deps").unwrap();
        let c = Catalog::new(dir.path().to_path_buf());
        assert_eq!(
            c.resolve_image("ghcr.io/acme/echo:1.2").unwrap(),
            dir.path().join("fn-echo")
        );
        assert_eq!(c.available(), vec!["echo", "spin"]);
        let err = c.resolve_image("nope:latest").unwrap_err();
        assert!(err.contains("echo, spin"), "{err}");
    }

    #[test]
    fn a_bare_program_is_found_in_the_catalog_then_in_path() {
        let dir = tempfile::tempdir().unwrap();
        touch_exec(dir.path(), "fn-shasum");
        let c = Catalog::new(dir.path().to_path_buf());
        assert_eq!(
            c.resolve_program("fn-shasum").unwrap(),
            dir.path().join("fn-shasum")
        );
        assert!(c.resolve_program("sh").is_some());
        assert!(c.resolve_program("definitely-not-a-program-xyz").is_none());
    }

    fn ep(name: &str) -> EntryPointName {
        EntryPointName::parse(name).unwrap()
    }

    #[test]
    fn only_declared_entry_points_resolve_and_the_error_lists_them() {
        let dir = tempfile::tempdir().unwrap();
        touch_exec(dir.path(), "fn-shasum");
        let c = Catalog::from_manifest(
            dir.path().to_path_buf(),
            r#"
            [images.shasum.entry_points.sha256]
            command = ["fn-shasum", "--stdin"]
            [images.shasum.entry_points.serve]
            command = ["fn-shasum"]
            mode = "http"
            "#,
        )
        .unwrap();
        let r = c
            .resolve("ghcr.io/x/shasum:1", Some(&ep("sha256")))
            .unwrap();
        assert_eq!(r.program, dir.path().join("fn-shasum"));
        assert_eq!(r.args, vec!["--stdin"]);
        assert_eq!(r.mode, EntryMode::Classic);
        assert_eq!(
            c.resolve("shasum", Some(&ep("serve"))).unwrap().mode,
            EntryMode::Http
        );
        let default = c.resolve("shasum", None).unwrap();
        assert_eq!((default.mode, default.entry_point), (EntryMode::Http, None));

        let err = c.resolve("shasum", Some(&ep("sh"))).unwrap_err();
        assert!(err.starts_with("envProcess:"), "{err}");
        assert!(err.contains("serve, sha256"), "{err}");
        let err = c.resolve("echo", Some(&ep("sha256"))).unwrap_err();
        assert!(err.contains("declared: none"), "{err}");
    }

    #[test]
    fn the_example_manifest_declares_the_shasum_entry_points() {
        let c = Catalog::from_manifest(
            PathBuf::from("/nonexistent"),
            include_str!("../catalog.example.toml"),
        )
        .unwrap();
        let shasum = &c.images["shasum"];
        assert_eq!(shasum[&ep("sha256")].command, vec!["fn-shasum", "--stdin"]);
        assert_eq!(shasum[&ep("serve")].mode, EntryMode::Http);
    }

    #[test]
    fn a_bad_manifest_names_the_key() {
        let dir = PathBuf::from("/nonexistent");
        let err = Catalog::from_manifest(
            dir.clone(),
            "[images.shasum.entry_points.\"sh -c\"]\ncommand = [\"sh\"]\n",
        )
        .unwrap_err();
        assert!(err.starts_with("images.shasum.entry_points.sh -c"), "{err}");
        let err = Catalog::from_manifest(
            dir.clone(),
            "[images.shasum.entry_points.a]\ncommand = []\n",
        )
        .unwrap_err();
        assert!(err.contains("command"), "{err}");
        let err = Catalog::from_manifest(dir.clone(), "[images.\"a/b\"]\n").unwrap_err();
        assert!(err.starts_with("images.a/b"), "{err}");
        assert!(
            Catalog::from_manifest(dir, "[images.x.entry_points.a]\nprogram = \"sh\"\n").is_err()
        );
    }
}
