//! Data-parallel runs of `metl train`: `--nproc N` starts N processes of the same command
//! on this machine; a process started with `torchrun`'s variables (`WORLD_SIZE`, `RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`, `LOCAL_RANK`) joins their group. Rank 0 alone writes the
//! run folder; the others learn its path from rank 0.
use crate::error::bad_input;
use anyhow::Context;
use metl_dist::{Collective, DistConfig, DistError, Local, LocalLaunch, ProcessGroup};
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};
use tch::{Device, Kind, Tensor};

/// A rank of a launched group failed; `metl` exits with its status.
#[derive(Debug, thiserror::Error)]
#[error("rank {rank} of the data-parallel run {message}")]
pub struct RankFailed {
    /// The first rank that failed.
    pub rank: usize,
    /// Its exit status (1 when it had none, e.g. killed by a signal).
    pub code: u8,
    /// What happened.
    pub message: String,
}

/// Whether this process was started as a rank of a group (`WORLD_SIZE` is set).
pub fn in_group() -> bool {
    std::env::var_os("WORLD_SIZE").is_some()
}

/// `metl train ... --nproc N`: runs the same command line without `--nproc` as `nproc`
/// processes on this machine (ranks 0..N on a free loopback port, the cores shared among
/// them) and waits for them; when one fails, the others are stopped.
pub fn launch(nproc: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the metl executable")?;
    let args = without_nproc(std::env::args_os().skip(1));
    let launch = LocalLaunch::new(nproc);
    let result = metl_dist::launch_local(&launch, |_| {
        let mut cmd = Command::new(&exe);
        cmd.args(&args);
        cmd
    });
    match result {
        Ok(_) => Ok(()),
        Err(DistError::Launch { rank, message, code }) => {
            let code = code.and_then(|c| u8::try_from(c).ok()).filter(|&c| c != 0).unwrap_or(1);
            Err(RankFailed { rank, code, message }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The command-line arguments without `--nproc N` / `--nproc=N`.
fn without_nproc(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if arg == "--nproc" {
            skip_next = true;
        } else if !arg.to_string_lossy().starts_with("--nproc=") {
            out.push(arg);
        }
    }
    out
}

/// The group this process belongs to and the device it trains on: [`Local`] on `device`
/// for a plain run; for a rank, its group (Gloo for CPU, NCCL for CUDA) and, on CUDA, the
/// GPU `cuda:LOCAL_RANK`.
pub fn join(device: Device) -> anyhow::Result<(Arc<dyn Collective>, Device)> {
    let Some(config) = DistConfig::from_env().map_err(bad_input)? else {
        return Ok((Arc::new(Local), device));
    };
    let device = match device {
        Device::Cuda(_) if config.world_size > 1 => {
            let gpus = tch::Cuda::device_count() as usize;
            if config.local_rank >= gpus {
                return Err(bad_input(format!(
                    "LOCAL_RANK = {} but this machine has {gpus} GPU(s): one process per GPU",
                    config.local_rank
                )));
            }
            Device::Cuda(config.local_rank)
        }
        other => other,
    };
    let group = ProcessGroup::new(&config, metl_dist::Backend::for_device(device)).with_context(|| {
        format!("joining the data-parallel group as rank {} of {}", config.rank, config.world_size)
    })?;
    Ok((Arc::new(group), device))
}

/// Rank 0's `path` on every rank (the others pass `None`).
pub fn share_path(collective: &dyn Collective, path: Option<&Path>) -> anyhow::Result<PathBuf> {
    const MAX: usize = 4096;
    if collective.world_size() == 1 {
        return path.map(Path::to_owned).context("rank 0 has the path");
    }
    let mut bytes = vec![0u8; MAX + 8];
    if let Some(p) = path {
        let text = p.to_string_lossy();
        let raw = text.as_bytes();
        if raw.len() > MAX {
            return Err(bad_input(format!("run folder path longer than {MAX} bytes: {text}")));
        }
        bytes[..8].copy_from_slice(&(raw.len() as u64).to_le_bytes());
        bytes[8..8 + raw.len()].copy_from_slice(raw);
    }
    let t = Tensor::from_slice(&bytes).to_kind(Kind::Uint8);
    collective.broadcast(std::slice::from_ref(&t), 0)?;
    let shared = Vec::<u8>::try_from(&t)?;
    let len = u64::from_le_bytes(shared[..8].try_into().expect("8 bytes")) as usize;
    Ok(PathBuf::from(String::from_utf8_lossy(&shared[8..8 + len.min(MAX)]).into_owned()))
}

/// Mean of `values` over the ranks (host numbers; one small collective).
pub fn mean_over_ranks(collective: &dyn Collective, values: &mut [f64]) -> anyhow::Result<()> {
    if collective.world_size() > 1 {
        collective.all_reduce_f64(values, metl_dist::ReduceOp::Sum, Device::Cpu)?;
        let n = collective.world_size() as f64;
        values.iter_mut().for_each(|v| *v /= n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nproc_is_dropped_from_the_children_command_line() {
        let args = ["train", "c.toml", "--nproc", "2", "--set", "x=1", "--nproc=3"].map(OsString::from);
        let kept = without_nproc(args.into_iter());
        assert_eq!(kept, ["train", "c.toml", "--set", "x=1"].map(OsString::from));
    }
}
