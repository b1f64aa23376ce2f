//! Checkpoints that are never lost: each is a folder `checkpoints/step-N/` written under a
//! temporary name and renamed into place when complete; `checkpoints/latest` then names
//! it (itself replaced atomically). A crash at any moment leaves the previous checkpoint
//! intact and `latest` pointing at a complete one.
//!
//! A checkpoint holds named groups of tensors (`params.safetensors` for the model,
//! `optimizer.safetensors` for the optimizer's moments, ...) and `state.json`, the
//! training state needed to continue exactly: step, data-stream positions, best metric.

use crate::run_dir::{write_atomically, write_json};
use anyhow::{anyhow, Context};
use metl_models::Params;
use serde::{de::DeserializeOwned, Serialize};
use std::{
    fs,
    path::{Path, PathBuf},
};
use tch::Device;

/// How many recent checkpoints to keep (older ones are deleted after a new one lands).
pub const KEEP: usize = 2;

fn step_dir(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("step-{step:09}"))
}

/// Writes a checkpoint for `step` into the checkpoints folder `dir`: every `(name, params)`
/// group as `name.safetensors`, and `state` as `state.json`. Returns its folder.
pub fn save(
    dir: &Path,
    step: u64,
    groups: &[(&str, &Params)],
    state: &impl Serialize,
) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".tmp-step-{step:09}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for (name, params) in groups {
        params.save_safetensors(tmp.join(format!("{name}.safetensors")))?;
    }
    write_json(&tmp.join("state.json"), state)?;
    let final_dir = step_dir(dir, step);
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)?;
    }
    fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), final_dir.display()))?;
    let name = final_dir.file_name().expect("a step folder has a name").to_string_lossy().into_owned();
    write_atomically(&dir.join("latest"), format!("{name}\n").as_bytes())?;
    prune(dir)?;
    Ok(final_dir)
}

/// Deletes all but the [`KEEP`] newest complete checkpoints (and stale temporaries).
fn prune(dir: &Path) -> anyhow::Result<()> {
    let mut steps: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    steps.sort();
    for old in steps.iter().rev().skip(KEEP) {
        fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// The newest complete checkpoint of a checkpoints folder, if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    let name = fs::read_to_string(dir.join("latest")).ok()?;
    let path = dir.join(name.trim());
    path.join("state.json").is_file().then_some(path)
}

/// Reads the training state of a checkpoint folder.
pub fn load_state<S: DeserializeOwned>(checkpoint: &Path) -> anyhow::Result<S> {
    let path = checkpoint.join("state.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a valid training state", path.display()))
}

/// Reads the tensor group `name` of a checkpoint folder onto `device`.
pub fn load_group(checkpoint: &Path, name: &str, device: Device) -> anyhow::Result<Params> {
    let path = checkpoint.join(format!("{name}.safetensors"));
    if !path.is_file() {
        return Err(anyhow!("{}: missing from the checkpoint", path.display()));
    }
    Ok(Params::load_safetensors(&path, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use tch::Tensor;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct State {
        step: u64,
    }

    #[test]
    fn saves_prunes_and_finds_the_latest() {
        let dir = std::env::temp_dir().join(format!("metl-ckpt-test-{}", std::process::id()));
        let params = Params::from_named(vec![("w".into(), Tensor::from_slice(&[1.0f32, 2.0]))]).unwrap();
        for step in [10, 20, 30] {
            save(&dir, step, &[("params", &params)], &State { step }).unwrap();
        }
        let newest = latest(&dir).unwrap();
        assert!(newest.ends_with("step-000000030"));
        assert_eq!(load_state::<State>(&newest).unwrap(), State { step: 30 });
        assert!(load_group(&newest, "params", Device::Cpu).unwrap()["w"].equal(&params["w"]));
        assert!(load_group(&newest, "optimizer", Device::Cpu).is_err());
        let mut kept: Vec<_> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        kept.sort();
        assert_eq!(kept, ["latest", "step-000000020", "step-000000030"]);
        fs::remove_dir_all(dir).unwrap();
    }
}
