//! [`launch_local`]: `torchrun --standalone --nproc-per-node N` for one machine — start N
//! copies of a command with the rendezvous variables set, and stop them all if one fails.
use crate::error::{DistError, Result};
use std::{
    net::TcpListener,
    process::{Child, Command, ExitStatus},
    thread,
    time::{Duration, Instant},
};

/// How to start the processes of one machine.
#[derive(Debug, Clone)]
pub struct LocalLaunch {
    /// The number of processes.
    pub nproc: usize,
    /// The store's port; `None` picks a free one.
    pub port: Option<u16>,
    /// Intra-op threads per process (`OMP_NUM_THREADS`, unless the caller's environment
    /// sets it): by default the machine's cores divided among the processes, at least 1.
    pub threads_per_process: Option<usize>,
    /// How long the other processes get to stop on their own (their collectives fail when a
    /// peer dies) after one fails, before they are killed.
    pub grace: Duration,
}

impl LocalLaunch {
    /// `nproc` processes on a free port, cores shared among them, 30 s of grace.
    pub fn new(nproc: usize) -> Self {
        Self { nproc, port: None, threads_per_process: None, grace: Duration::from_secs(30) }
    }
}

/// What became of the launched processes.
#[derive(Debug)]
pub struct LaunchOutcome {
    /// Each rank's exit status.
    pub statuses: Vec<ExitStatus>,
}

/// A free TCP port on loopback (the operating system's choice).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|source| DistError::Io { context: "finding a free port on 127.0.0.1".into(), source })?;
    let port = listener
        .local_addr()
        .map_err(|source| DistError::Io { context: "reading the free port".into(), source })?
        .port();
    Ok(port)
}

/// Starts `launch.nproc` processes of `command(rank)` with `MASTER_ADDR=127.0.0.1`,
/// `MASTER_PORT`, `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE` (and
/// `OMP_NUM_THREADS`) set, and waits for all of them.
///
/// When one exits with a failure, the others get `launch.grace` to fail on their own (a
/// collective with a dead peer fails), then are killed; the error names the first rank that
/// failed and how.
pub fn launch_local(
    launch: &LocalLaunch,
    mut command: impl FnMut(usize) -> Command,
) -> Result<LaunchOutcome> {
    if launch.nproc == 0 {
        return Err(DistError::Config { field: "nproc", value: "0".into(), reason: "must be >= 1".into() });
    }
    let port = match launch.port {
        Some(p) => p,
        None => free_port()?,
    };
    let threads = launch.threads_per_process.unwrap_or_else(|| {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        (cores / launch.nproc).max(1)
    });
    let mut children: Vec<Option<Child>> = Vec::with_capacity(launch.nproc);
    for rank in 0..launch.nproc {
        let mut cmd = command(rank);
        cmd.env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", launch.nproc.to_string())
            .env("LOCAL_WORLD_SIZE", launch.nproc.to_string());
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            cmd.env("OMP_NUM_THREADS", threads.to_string());
        }
        match cmd.spawn() {
            Ok(child) => children.push(Some(child)),
            Err(source) => {
                kill_all(&mut children);
                return Err(DistError::Launch {
                    rank,
                    message: format!("could not start {cmd:?}: {source}"),
                    code: None,
                });
            }
        }
    }
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; launch.nproc];
    let mut failed: Option<(usize, Instant)> = None;
    loop {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let status = child
                .try_wait()
                .map_err(|source| DistError::Io { context: format!("waiting for rank {rank}"), source })?;
            if let Some(status) = status {
                statuses[rank] = Some(status);
                *slot = None;
                if !status.success() && failed.is_none() {
                    failed = Some((rank, Instant::now()));
                }
            }
        }
        if children.iter().all(Option::is_none) {
            break;
        }
        if let Some((rank, since)) = failed {
            if since.elapsed() > launch.grace {
                let still = children.iter().position(Option::is_some).unwrap_or(rank);
                kill_all(&mut children);
                return Err(DistError::Killed { rank: still, failed: rank, after: launch.grace });
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let statuses: Vec<ExitStatus> =
        statuses.into_iter().map(|s| s.expect("every child was waited for")).collect();
    if let Some((rank, _)) = failed {
        let status = statuses[rank];
        return Err(DistError::Launch {
            rank,
            message: format!("exited with {status}"),
            code: status.code(),
        });
    }
    Ok(LaunchOutcome { statuses })
}

fn kill_all(children: &mut [Option<Child>]) {
    for child in children.iter_mut().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
