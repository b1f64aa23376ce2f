//! [`ProcessGroup`]: a c10d process group joined through a `TCPStore` rendezvous, from
//! the variables `torchrun` and Slurm wrappers set ([`DistConfig::from_env`]).
use crate::{
    collective::{fused, Collective, ReduceOp},
    error::{DistError, Result},
    ffi,
};
use std::{sync::Mutex, time::Duration};
use tch::{Device, Tensor};

/// The c10d backend of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors (compiled into every libtorch).
    Gloo,
    /// NCCL: CUDA tensors, one GPU per process (needs a CUDA libtorch with NCCL).
    Nccl,
}

impl Backend {
    /// The backend for tensors on `device`: NCCL for CUDA, Gloo otherwise.
    pub fn for_device(device: Device) -> Self {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    /// Whether this build of metl-dist can create groups of this backend.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Gloo => true,
            Backend::Nccl => ffi::has_nccl(),
        }
    }

    /// `"gloo"` or `"nccl"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// Where and how to join a group: `torch.distributed.init_process_group`'s arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct DistConfig {
    /// The address of rank 0, which hosts the `TCPStore` (`MASTER_ADDR`).
    pub master_addr: String,
    /// The store's port (`MASTER_PORT`).
    pub master_port: u16,
    /// This process's rank (`RANK`).
    pub rank: usize,
    /// The number of processes (`WORLD_SIZE`).
    pub world_size: usize,
    /// This process's index on its machine (`LOCAL_RANK`; its GPU with NCCL).
    pub local_rank: usize,
    /// The bound on the rendezvous and on every collective (`METL_DIST_TIMEOUT` seconds;
    /// default 1800, as PyTorch's).
    pub timeout: Duration,
}

/// The variables [`DistConfig::from_env`] reads.
pub const ENV_VARS: [&str; 5] = ["MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"];

impl DistConfig {
    /// The default timeout of the rendezvous and of each collective.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

    /// The group described by the environment, or `None` when `WORLD_SIZE` is unset (a
    /// plain single-process run). `MASTER_ADDR` defaults to `127.0.0.1`, `MASTER_PORT` to
    /// 29500, `LOCAL_RANK` to `RANK`; a malformed value or a rank outside the world is an
    /// error naming the variable.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`DistConfig::from_env`] over any variable lookup (for tests and launchers).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(world) = var("WORLD_SIZE") else { return Ok(None) };
        fn parse<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T> {
            value.trim().parse().map_err(|_| DistError::Config {
                field,
                value: value.to_owned(),
                reason: "not a non-negative integer".into(),
            })
        }
        let world_size: usize = parse("WORLD_SIZE", &world)?;
        if world_size == 0 {
            return Err(DistError::Config {
                field: "WORLD_SIZE",
                value: world,
                reason: "must be >= 1".into(),
            });
        }
        let rank_text = var("RANK").ok_or_else(|| DistError::Config {
            field: "RANK",
            value: String::new(),
            reason: "unset while WORLD_SIZE is set".into(),
        })?;
        let rank: usize = parse("RANK", &rank_text)?;
        if rank >= world_size {
            return Err(DistError::Config {
                field: "RANK",
                value: rank_text,
                reason: format!("must be below WORLD_SIZE = {world_size}"),
            });
        }
        let local_rank = var("LOCAL_RANK").map(|v| parse("LOCAL_RANK", &v)).transpose()?.unwrap_or(rank);
        let master_port = var("MASTER_PORT").map(|v| parse("MASTER_PORT", &v)).transpose()?.unwrap_or(29500);
        let timeout = match var("METL_DIST_TIMEOUT") {
            Some(v) => {
                let secs: f64 =
                    v.trim().parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0).ok_or_else(|| {
                        DistError::Config {
                            field: "METL_DIST_TIMEOUT",
                            value: v.clone(),
                            reason: "seconds > 0".into(),
                        }
                    })?;
                Duration::from_secs_f64(secs)
            }
            None => Self::DEFAULT_TIMEOUT,
        };
        Ok(Some(Self {
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port,
            rank,
            world_size,
            local_rank,
            timeout,
        }))
    }
}

/// A c10d process group (`torch.distributed`'s default group) of one backend.
///
/// ```no_run
/// use metl_dist::{Backend, Collective, DistConfig, ProcessGroup};
/// // Under `torchrun` or `metl train --nproc 2`: the variables are set.
/// let config = DistConfig::from_env()?.expect("WORLD_SIZE is set");
/// let group = ProcessGroup::new(&config, Backend::Gloo)?;
/// let grad = tch::Tensor::from_slice(&[1.0f32 + group.rank() as f32]);
/// group.all_reduce_mean(std::slice::from_ref(&grad))?; // 1.5 on both ranks
/// # Ok::<(), metl_dist::DistError>(())
/// ```
pub struct ProcessGroup {
    // Declared first: dropped before the store it uses.
    group: Mutex<ffi::Group>,
    _store: ffi::Store,
    config: DistConfig,
    backend: Backend,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup").field("config", &self.config).field("backend", &self.backend).finish()
    }
}

impl ProcessGroup {
    /// Joins the group: rank 0 hosts the `TCPStore` at `master_addr:master_port`, every
    /// rank connects to it, and the backend connects the ranks to each other. Fails after
    /// `config.timeout` if some rank never arrives.
    pub fn new(config: &DistConfig, backend: Backend) -> Result<Self> {
        if !backend.is_available() {
            return Err(DistError::Config {
                field: "backend",
                value: backend.name().into(),
                reason:
                    "this build of metl-dist has no NCCL (libtorch without CUDA, or nccl.h not found when \
                         it was built)"
                        .into(),
            });
        }
        let timeout_ms = config.timeout.as_millis().min(i64::MAX as u128) as i64;
        let store = ffi::Store::tcp(
            &config.master_addr,
            config.master_port,
            config.world_size,
            config.rank == 0,
            timeout_ms,
        )?;
        let group = match backend {
            Backend::Gloo => {
                // On one machine, bind Gloo to loopback (the hostname may not resolve in a
                // container); elsewhere follow GLOO_SOCKET_IFNAME or the hostname, as
                // PyTorch does.
                let loopback = ["127.0.0.1", "localhost", "::1"].contains(&config.master_addr.as_str());
                let host =
                    (loopback && std::env::var_os("GLOO_SOCKET_IFNAME").is_none()).then_some("127.0.0.1");
                ffi::Group::gloo(&store, config.rank, config.world_size, timeout_ms, host)?
            }
            Backend::Nccl => ffi::Group::nccl(&store, config.rank, config.world_size, timeout_ms)?,
        };
        Ok(Self { group: Mutex::new(group), _store: store, config: config.clone(), backend })
    }

    /// The group described by the environment ([`DistConfig::from_env`]) with the backend
    /// for `device`, or `None` for a single-process run.
    pub fn from_env(device: Device) -> Result<Option<Self>> {
        DistConfig::from_env()?.map(|c| Self::new(&c, Backend::for_device(device))).transpose()
    }

    /// How the group was joined.
    pub fn config(&self) -> &DistConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn with_group<T>(&self, f: impl FnOnce(&ffi::Group) -> Result<T>) -> Result<T> {
        // A poisoned lock means a collective panicked mid-way: the group is unusable.
        let group = self.group.lock().map_err(|_| DistError::C10d {
            operation: "collective".into(),
            message: "an earlier collective panicked; the group is unusable".into(),
        })?;
        f(&group)
    }
}

impl Collective for ProcessGroup {
    fn rank(&self) -> usize {
        self.config.rank
    }

    fn world_size(&self) -> usize {
        self.config.world_size
    }

    fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        let op = match op {
            ReduceOp::Sum => ffi::SUM,
            ReduceOp::Max => ffi::MAX,
            ReduceOp::Min => ffi::MIN,
            ReduceOp::Product => ffi::PRODUCT,
        };
        self.with_group(|g| fused(tensors, |buffer| g.all_reduce(buffer, op)))
    }

    fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        if root >= self.world_size() {
            return Err(DistError::Config {
                field: "root",
                value: root.to_string(),
                reason: format!("must be below the world size {}", self.world_size()),
            });
        }
        self.with_group(|g| fused(tensors, |buffer| g.broadcast(buffer, root)))
    }

    fn barrier(&self) -> Result<()> {
        self.with_group(|g| g.barrier())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_environment_describes_the_group() {
        assert_eq!(DistConfig::from_lookup(lookup(&[])).unwrap(), None);
        let c =
            DistConfig::from_lookup(lookup(&[("WORLD_SIZE", "4"), ("RANK", "2"), ("MASTER_PORT", "1234")]))
                .unwrap()
                .unwrap();
        assert_eq!((c.rank, c.world_size, c.local_rank, c.master_port), (2, 4, 2, 1234));
        assert_eq!(c.master_addr, "127.0.0.1");
        assert_eq!(c.timeout, DistConfig::DEFAULT_TIMEOUT);
    }

    #[test]
    fn bad_variables_are_named() {
        let err = |pairs: &[(&str, &str)]| DistConfig::from_lookup(lookup(pairs)).unwrap_err().to_string();
        assert_eq!(err(&[("WORLD_SIZE", "2")]), "RANK = \"\": unset while WORLD_SIZE is set");
        assert_eq!(err(&[("WORLD_SIZE", "2"), ("RANK", "2")]), "RANK = \"2\": must be below WORLD_SIZE = 2");
        assert!(err(&[("WORLD_SIZE", "two"), ("RANK", "0")]).starts_with("WORLD_SIZE = \"two\""));
        assert!(err(&[("WORLD_SIZE", "1"), ("RANK", "0"), ("METL_DIST_TIMEOUT", "-1")])
            .starts_with("METL_DIST_TIMEOUT"));
    }
}
