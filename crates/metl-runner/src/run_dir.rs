//! The run directory: everything one experiment writes, in one folder.
//!
//! ```text
//! runs/<name>/
//!   config.toml            the resolved configuration (file + --set overrides)
//!   run.json               metl version, git revision, command line, device, start time
//!   metrics.jsonl          one JSON object per logged step
//!   metrics.csv            the same as a table
//!   checkpoints/step-N/    params.safetensors, optimizer.safetensors, state.json
//!   checkpoints/latest     the name of the newest complete checkpoint
//!   eval.json              the final evaluation
//!   plots/*.png            learning curves, task weights, accuracy with its interval
//! ```
//!
//! Every file is written through a temporary file and a rename, so a crash or `Ctrl-C`
//! never leaves a half-written file behind.

use crate::error::bad_input;
use anyhow::Context;
use serde::Serialize;
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

/// Writes `bytes` to `path` atomically: a temporary sibling, `fsync`, then a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Serialises `value` as pretty JSON into `path`, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Creates a fresh run directory `parent/name`, or `parent/name-2`, `-3`, … when
    /// that exists already.
    pub fn create(parent: &Path, name: &str) -> anyhow::Result<Self> {
        fs::create_dir_all(parent)
            .map_err(|e| bad_input(format!("cannot create output folder {}: {e}", parent.display())))?;
        for n in 1.. {
            let candidate = if n == 1 { parent.join(name) } else { parent.join(format!("{name}-{n}")) };
            match fs::create_dir(&candidate) {
                Ok(()) => return Ok(Self { root: candidate }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(bad_input(format!("cannot create run folder {}: {e}", candidate.display())))
                }
            }
        }
        unreachable!("the loop above returns")
    }

    /// Opens an existing run directory (it must hold a `config.toml`).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if !path.join("config.toml").is_file() {
            return Err(bad_input(format!("{} is not a metl run folder (no config.toml)", path.display())));
        }
        Ok(Self { root: path.to_owned() })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the folder.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.root.join(relative)
    }

    /// The resolved configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.join("config.toml")
    }

    /// The checkpoints folder.
    pub fn checkpoints(&self) -> PathBuf {
        self.join("checkpoints")
    }

    /// The plots folder (created on demand).
    pub fn plots(&self) -> anyhow::Result<PathBuf> {
        let dir = self.join("plots");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Writes the resolved configuration.
    pub fn write_config(&self, table: &toml::Table) -> anyhow::Result<()> {
        write_atomically(&self.config_path(), toml::to_string_pretty(table)?.as_bytes())
    }
}

/// Facts about the run written to `run.json`.
#[derive(Debug, Serialize)]
pub struct RunInfo {
    /// The metl version.
    pub metl_version: &'static str,
    /// The git revision metl was built from (`unknown` outside a git checkout).
    pub git_revision: &'static str,
    /// The command line.
    pub command: Vec<String>,
    /// The device, e.g. `Cpu` or `Cuda(0)`.
    pub device: String,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// Data-parallel processes (1 for a plain run).
    pub processes: usize,
}

impl RunInfo {
    /// Information about this process, on `device`.
    pub fn current(device: tch::Device) -> Self {
        Self {
            metl_version: env!("CARGO_PKG_VERSION"),
            git_revision: option_env!("METL_GIT_REVISION").unwrap_or("unknown"),
            command: std::env::args().collect(),
            device: format!("{device:?}"),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            processes: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_collide_and_writes_are_atomic() {
        let parent = std::env::temp_dir().join(format!("metl-rundir-test-{}", std::process::id()));
        let a = RunDir::create(&parent, "exp").unwrap();
        let b = RunDir::create(&parent, "exp").unwrap();
        assert_eq!(b.root().file_name().unwrap(), "exp-2");
        write_json(&a.join("x.json"), &serde_json::json!({"a": 1})).unwrap();
        let names: Vec<_> = fs::read_dir(a.root()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["x.json"]);
        assert!(RunDir::open(a.root()).is_err());
        fs::remove_dir_all(parent).unwrap();
    }
}
