//! The packaging check of `cargo xtask lint`: every crate that would be published packs
//! with its metadata, README and both license texts.
//!
//! Offline and without crates.io accounts, the closest check to `cargo publish --dry-run`
//! that works for crates whose path dependencies are themselves unpublished is
//! `cargo package --no-verify` on all of them at once: cargo resolves each path dependency
//! to its version through a local overlay registry, writes the normalized manifest and the
//! lockfile of every crate, and warns about missing metadata. (`--verify` would also
//! compile every archive from scratch, minutes per crate on two cores; clippy and rustdoc
//! compile the same sources.) Before that, `cargo package --list` gives each crate's file
//! list, which must hold what crates.io and docs.rs show.

use crate::cmd::{cargo, describe, fail, Failure, Result};

/// The crates that are published; benches, examples and xtask have `publish = false`.
pub const PUBLISHED: [&str; 7] =
    ["metl-build", "metl-data", "metl-dist", "metl-models", "metl-mtl", "metl-meta", "metl-runner"];

/// Files every package must contain (besides its crate root, `src/lib.rs` or `src/main.rs`).
const REQUIRED_FILES: [&str; 4] = ["Cargo.toml", "README.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// `[package]` keys every published manifest must set, directly or with `.workspace = true`.
const REQUIRED_KEYS: [&str; 8] = [
    "description",
    "license",
    "repository",
    "readme",
    "documentation",
    "keywords",
    "categories",
    "rust-version",
];

/// crates.io refuses archives above 10 MiB.
const MAX_CRATE_BYTES: u64 = 10 * 1024 * 1024;

/// Runs the whole check; needs no libtorch (nothing is compiled).
pub fn check() -> Result {
    let root = crate::cmd::workspace_root();
    for krate in PUBLISHED {
        let manifest = std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml"))?;
        missing_keys(&manifest).map_err(|m| Failure(format!("crates/{krate}/Cargo.toml: {m}")))?;
        let listing = output(cargo().args(["package", "--list", "--allow-dirty", "--package", krate]))?;
        missing_files(&listing).map_err(|m| Failure(format!("the package of {krate} {m}")))?;
    }
    let target = crate::cmd::target_dir().join("package-check");
    let mut pack = cargo();
    pack.args(["package", "--no-verify", "--allow-dirty", "--target-dir"]).arg(&target);
    for krate in PUBLISHED {
        pack.args(["--package", krate]);
    }
    eprintln!("$ {}", describe(&pack));
    let out = pack.output().map_err(|e| Failure(format!("cannot run cargo package: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        fail!("`{}` failed:\n{stderr}", describe(&pack));
    }
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.trim_start().starts_with("warning")).collect();
    if !warnings.is_empty() {
        fail!("`{}` warned:\n{}", describe(&pack), warnings.join("\n"));
    }
    let workspace = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let version = workspace_version(&workspace)
        .ok_or_else(|| Failure("Cargo.toml: no version in [workspace.package]".into()))?;
    for krate in PUBLISHED {
        let archive = target.join("package").join(format!("{krate}-{version}.crate"));
        let size =
            std::fs::metadata(&archive).map_err(|e| Failure(format!("{}: {e}", archive.display())))?.len();
        if size > MAX_CRATE_BYTES {
            fail!("{} is {size} bytes, above crates.io's limit of {MAX_CRATE_BYTES}", archive.display());
        }
    }
    eprintln!(
        "packages: {} crates pack (cargo package --no-verify) with metadata, README, LICENSE-MIT and LICENSE-APACHE",
        PUBLISHED.len()
    );
    Ok(())
}

/// Runs `cmd`, echoing it, and returns its standard output; fails unless it succeeds.
fn output(cmd: &mut std::process::Command) -> Result<String> {
    eprintln!("$ {}", describe(cmd));
    let out = cmd.output().map_err(|e| Failure(format!("cannot start {}: {e}", describe(cmd))))?;
    if !out.status.success() {
        fail!("`{}` failed:\n{}", describe(cmd), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a `cargo package --list` listing lacks, if anything.
fn missing_files(listing: &str) -> std::result::Result<(), String> {
    let files: Vec<&str> = listing.lines().map(str::trim).collect();
    let mut missing: Vec<&str> = REQUIRED_FILES.into_iter().filter(|f| !files.contains(f)).collect();
    if !files.iter().any(|f| *f == "src/lib.rs" || *f == "src/main.rs") {
        missing.push("src/lib.rs or src/main.rs");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "lacks {} (a LICENSE-* in a crate folder is a link to the one at the root)",
            missing.join(", ")
        ))
    }
}

/// The keys of the `[package]` table of `manifest` (`key = …` or `key.workspace = true`).
fn package_keys(manifest: &str) -> Vec<&str> {
    let mut in_package = false;
    let mut keys = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && !line.starts_with('#') {
            if let Some((key, _)) = line.split_once('=') {
                keys.push(key.trim().trim_end_matches(".workspace").trim());
            }
        }
    }
    keys
}

/// The `[package]` keys of `manifest` that crates.io and docs.rs need and it lacks.
fn missing_keys(manifest: &str) -> std::result::Result<(), String> {
    let keys = package_keys(manifest);
    let missing: Vec<&str> = REQUIRED_KEYS.into_iter().filter(|k| !keys.contains(k)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("[package] lacks {}", missing.join(", ")))
    }
}

/// `version` of the root manifest's `[workspace.package]` table.
fn workspace_version(manifest: &str) -> Option<&str> {
    let mut in_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == "[workspace.package]";
        } else if in_table {
            if let Some(("version", value)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                return Some(value.trim_matches('"'));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = ".cargo_vcs_info.json\nCargo.lock\nCargo.toml\nCargo.toml.orig\nLICENSE-APACHE\nLICENSE-MIT\nREADME.md\nsrc/lib.rs\n";

    #[test]
    fn a_complete_listing_passes() {
        assert_eq!(missing_files(LISTING), Ok(()));
        assert_eq!(missing_files(&LISTING.replace("src/lib.rs", "src/main.rs")), Ok(()));
    }

    #[test]
    fn a_listing_without_readme_or_license_fails_naming_them() {
        let err =
            missing_files(&LISTING.replace("README.md\n", "").replace("LICENSE-MIT\n", "")).unwrap_err();
        assert!(
            err.contains("README.md") && err.contains("LICENSE-MIT") && !err.contains("LICENSE-APACHE"),
            "{err}"
        );
        let err = missing_files(&LISTING.replace("src/lib.rs\n", "")).unwrap_err();
        assert!(err.contains("src/lib.rs or src/main.rs"), "{err}");
    }

    #[test]
    fn manifest_keys_direct_or_inherited() {
        let manifest = "[package]\nname = \"metl-x\"\ndescription = \"x\"\nlicense.workspace = true\n\
                        repository.workspace = true\nreadme = \"README.md\"\ndocumentation = \"https://docs.rs/metl-x\"\n\
                        keywords.workspace = true\ncategories.workspace = true\nrust-version.workspace = true\n\n\
                        [dependencies]\nreadme = \"not the package's\"\n";
        assert_eq!(missing_keys(manifest), Ok(()));
        let without = manifest.replace("documentation = \"https://docs.rs/metl-x\"\n", "");
        assert_eq!(missing_keys(&without), Err("[package] lacks documentation".into()));
        let only_elsewhere = manifest.replace("readme = \"README.md\"\n", "");
        assert_eq!(missing_keys(&only_elsewhere), Err("[package] lacks readme".into()));
    }

    #[test]
    fn reads_the_workspace_version() {
        let root = "[workspace]\nmembers = []\n[workspace.package]\nedition = \"2021\"\nversion = \"0.1.0\"\n[workspace.dependencies]\nversion = \"9\"\n";
        assert_eq!(workspace_version(root), Some("0.1.0"));
        assert_eq!(workspace_version("[package]\nversion = \"1.0.0\"\n"), None);
    }

    #[test]
    fn the_published_crates_are_workspace_members_with_the_metadata() {
        let root = crate::cmd::workspace_root();
        let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        for krate in PUBLISHED {
            assert!(workspace.contains(&format!("\"crates/{krate}\"")), "{krate} is not a workspace member");
            let manifest =
                std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml")).unwrap();
            assert_eq!(missing_keys(&manifest), Ok(()), "crates/{krate}/Cargo.toml");
        }
    }
}
