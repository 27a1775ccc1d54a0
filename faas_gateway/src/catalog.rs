//! The function catalog: an OpenFaaS image names a function by its last path segment without
//! tag or digest (`ghcr.io/acme/echo:1.2` -> `echo`), run as the executable `<dir>/fn-<name>`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
}

impl Catalog {
    pub fn new(dir: PathBuf) -> Self {
        Catalog { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// Resolves the program of an `envProcess` command: a path is used as is; a bare name is
    /// looked up in the catalog directory first, then in `PATH`.
    pub fn resolve_program(&self, program: &str) -> Option<PathBuf> {
        if program.contains('/') {
            let p = PathBuf::from(program);
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
}
