//! Two processes on loopback through c10d's Gloo: the collectives' results, a rank that
//! dies mid-run, a rank that never arrives.
//!
//! Each test starts this test binary twice more with `METL_DIST_WORKER` naming the worker
//! function to run (the `workers` test below dispatches it; without the variable it does
//! nothing).
use metl_dist::{
    launch_local, Backend, Collective, DistConfig, DistError, LocalLaunch, ProcessGroup, ReduceOp,
};
use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};
use tch::{Device, Kind, Tensor};

const WORKER: &str = "METL_DIST_WORKER";

fn run_workers(name: &str, out: Option<&PathBuf>) -> metl_dist::Result<metl_dist::LaunchOutcome> {
    let exe = std::env::current_exe().unwrap();
    let mut launch = LocalLaunch::new(2);
    launch.threads_per_process = Some(1);
    launch.grace = Duration::from_secs(20);
    launch_local(&launch, |_| {
        let mut cmd = Command::new(&exe);
        cmd.args(["workers", "--exact", "--nocapture", "--test-threads=1"])
            .env(WORKER, name)
            .env("METL_DIST_TIMEOUT", "20");
        if let Some(out) = out {
            cmd.env("METL_DIST_OUT", out);
        }
        cmd
    })
}

fn group() -> ProcessGroup {
    let config = DistConfig::from_env().unwrap().expect("launched with WORLD_SIZE");
    ProcessGroup::new(&config, Backend::Gloo).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

/// The worker side of every test (a no-op in a normal test run).
#[test]
fn workers() {
    match std::env::var(WORKER).as_deref() {
        Ok("collectives") => collectives(),
        Ok("dead_peer") => dead_peer(),
        Ok(other) => panic!("unknown worker {other}"),
        Err(_) => {}
    }
}

fn collectives() {
    let g = group();
    let r = g.rank() as f64;
    assert_eq!(g.world_size(), 2);
    // Mixed kinds, shapes and a non-contiguous view, fused per kind.
    let a = Tensor::from_slice(&[1.0f32 + r as f32, 2.0, 3.0, 4.0]).view([2, 2]).transpose(0, 1);
    let b = Tensor::from_slice(&[10.0 * (r + 1.0)]);
    g.all_reduce_sum(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
    assert_eq!(values(&a.contiguous()), vec![3.0, 6.0, 4.0, 8.0]);
    assert_eq!(values(&b), vec![30.0]);
    let m = Tensor::from_slice(&[r]);
    g.all_reduce_mean(std::slice::from_ref(&m)).unwrap();
    assert_eq!(values(&m), vec![0.5]);
    // Buffers: running statistics averaged, integer counters left alone.
    let running = Tensor::from_slice(&[2.0 * r]);
    let counter = Tensor::from_slice(&[5 + g.rank() as i64]);
    g.all_reduce_mean_floating(&[running.shallow_clone(), counter.shallow_clone()]).unwrap();
    assert_eq!(values(&running), vec![1.0]);
    assert_eq!(counter.int64_value(&[0]), 5 + g.rank() as i64);
    let mut x = [r, -r];
    g.all_reduce_f64(&mut x, ReduceOp::Max, Device::Cpu).unwrap();
    assert_eq!(x, [1.0, 0.0]);
    // Broadcast from rank 1, also into a parameter that requires gradients.
    let p = Tensor::from_slice(&[r, r]).set_requires_grad(true);
    g.broadcast(std::slice::from_ref(&p), 1).unwrap();
    assert_eq!(values(&p.detach()), vec![1.0, 1.0]);
    assert!(p.requires_grad());
    // Uneven rows gathered in rank order.
    let rows = Tensor::full([g.rank() as i64 + 1, 2], r, (Kind::Float, Device::Cpu));
    let all = g.all_gather_rows(&rows).unwrap();
    assert_eq!(values(&all), vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    g.check_same("a constant", &[1.0, 2.0], Device::Cpu).unwrap();
    let err = g.check_same("the rank", &[r], Device::Cpu).unwrap_err();
    assert!(matches!(err, DistError::Mismatch { .. }), "{err}");
    g.barrier().unwrap();
}

fn dead_peer() {
    let g = group();
    let t = Tensor::ones([1000], (Kind::Float, Device::Cpu));
    g.all_reduce_sum(std::slice::from_ref(&t)).unwrap();
    if g.rank() == 1 {
        std::process::exit(3);
    }
    let start = Instant::now();
    let result = g.all_reduce_sum(std::slice::from_ref(&t)).and_then(|_| g.barrier());
    let out = PathBuf::from(std::env::var("METL_DIST_OUT").unwrap());
    let report = match result {
        Ok(()) => "no error".to_owned(),
        Err(e) => format!("{:.1} s: {e}", start.elapsed().as_secs_f64()),
    };
    std::fs::write(out, report).unwrap();
}

#[test]
fn all_reduce_broadcast_barrier_and_gather_on_two_ranks() {
    let outcome = run_workers("collectives", None).unwrap();
    assert!(outcome.statuses.iter().all(|s| s.success()));
}

#[test]
fn a_rank_that_dies_fails_the_others_collectives_within_the_timeout() {
    let out = std::env::temp_dir().join(format!("metl-dist-dead-peer-{}", std::process::id()));
    let err = run_workers("dead_peer", Some(&out)).unwrap_err();
    assert!(matches!(err, DistError::Launch { rank: 1, .. }), "{err}");
    let report = std::fs::read_to_string(&out).expect("rank 0 wrote what it saw");
    let _ = std::fs::remove_file(&out);
    assert!(report.contains("failed"), "rank 0 saw: {report}");
    let secs: f64 = report.split(' ').next().unwrap().parse().unwrap();
    assert!(secs < 20.0, "rank 0 noticed after {secs} s: {report}");
    println!("rank 0 after its peer died: {report}");
}

#[test]
fn a_rank_that_never_arrives_is_an_error_after_the_timeout() {
    let config = DistConfig {
        master_addr: "127.0.0.1".into(),
        master_port: metl_dist::free_port().unwrap(),
        rank: 0,
        world_size: 2,
        local_rank: 0,
        timeout: Duration::from_secs(2),
    };
    let start = Instant::now();
    let err = ProcessGroup::new(&config, Backend::Gloo).unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(err, DistError::C10d { .. }), "{err}");
    assert!(waited < Duration::from_secs(30), "gave up after {waited:?}");
    println!("after {waited:?}: {err}");
}

#[test]
fn nccl_is_reported_when_absent() {
    if Backend::Nccl.is_available() {
        return;
    }
    let vars = |k: &str| match k {
        "WORLD_SIZE" => Some("1".to_owned()),
        "RANK" => Some("0".to_owned()),
        _ => None,
    };
    let config = DistConfig::from_lookup(vars).unwrap().unwrap();
    let err = ProcessGroup::new(&config, Backend::Nccl).unwrap_err().to_string();
    assert!(err.contains("no NCCL"), "{err}");
}
