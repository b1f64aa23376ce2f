//! The cost of one all-reduce on this machine: `cargo run --release -p metl-dist --example
//! all_reduce [-- NPROC]` starts NPROC (default 2) processes on loopback (Gloo, one thread
//! each) and prints, per message size, the median time of an all-reduce of a float32
//! tensor and the bandwidth it implies (bytes / time).
use metl_dist::{launch_local, Backend, Collective, DistConfig, LocalLaunch, ProcessGroup};
use std::{process::Command, time::Instant};
use tch::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(config) = DistConfig::from_env()? else {
        let nproc = std::env::args().nth(1).map_or(Ok(2), |n| n.parse())?;
        let exe = std::env::current_exe()?;
        let mut launch = LocalLaunch::new(nproc);
        launch.threads_per_process = Some(1);
        launch_local(&launch, |_| Command::new(&exe))?;
        return Ok(());
    };
    tch::set_num_threads(1);
    let group = ProcessGroup::new(&config, Backend::Gloo)?;
    if group.is_main() {
        println!("all-reduce (sum) of float32 on {} processes, Gloo over loopback:\n", group.world_size());
        println!("| bytes | median µs | GB/s |");
        println!("| ---: | ---: | ---: |");
    }
    for exponent in [2u32, 10, 14, 17, 19, 21, 23] {
        let bytes = 1usize << exponent;
        let t = Tensor::ones([(bytes / 4) as i64], (Kind::Float, Device::Cpu));
        let rounds = if bytes >= 1 << 21 { 20 } else { 200 };
        for _ in 0..5 {
            group.all_reduce_sum(std::slice::from_ref(&t))?;
        }
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            group.barrier()?;
            let start = Instant::now();
            group.all_reduce_sum(std::slice::from_ref(&t))?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[rounds / 2];
        if group.is_main() {
            println!("| {bytes} | {:.0} | {:.2} |", median * 1e6, bytes as f64 / median / 1e9);
        }
    }
    Ok(())
}
