//! NCCL on two GPUs: all-reduce and broadcast of CUDA tensors across two processes, one
//! GPU each (`cargo xtask gpu-check` runs it on machines with several GPUs). Elsewhere it
//! prints why it did not run and passes.
use metl_dist::{launch_local, Backend, Collective, DistConfig, LocalLaunch, ProcessGroup};
use std::{process::Command, time::Duration};
use tch::{Device, Kind, Tensor};

const WORKER: &str = "METL_DIST_NCCL_WORKER";

/// The ranks' side (a no-op in a normal test run).
#[test]
fn workers() {
    if std::env::var_os(WORKER).is_none() {
        return;
    }
    let config = DistConfig::from_env().unwrap().expect("launched with WORLD_SIZE");
    let device = Device::Cuda(config.local_rank);
    let group = ProcessGroup::new(&config, Backend::Nccl).unwrap();
    let r = group.rank() as f64;
    let t = Tensor::full([1 << 20], r + 1.0, (Kind::Float, device));
    group.all_reduce_sum(std::slice::from_ref(&t)).unwrap();
    assert_eq!(t.sum(Kind::Double).double_value(&[]), 3.0 * (1 << 20) as f64);
    let b = Tensor::full([7], r, (Kind::Double, device));
    group.broadcast(std::slice::from_ref(&b), 1).unwrap();
    assert_eq!(b.sum(Kind::Double).double_value(&[]), 7.0);
    group.barrier().unwrap();
}

#[test]
fn nccl_all_reduce_and_broadcast_on_two_gpus() {
    let gpus = tch::Cuda::device_count();
    if gpus < 2 || !Backend::Nccl.is_available() {
        println!(
            "skipped: needs 2 GPUs ({gpus} found) and metl-dist built with NCCL ({})",
            Backend::Nccl.is_available()
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut launch = LocalLaunch::new(2);
    launch.grace = Duration::from_secs(60);
    launch_local(&launch, |_| {
        let mut cmd = Command::new(&exe);
        cmd.args(["workers", "--exact", "--nocapture"]).env(WORKER, "1").env("METL_DIST_TIMEOUT", "120");
        cmd
    })
    .unwrap();
}
