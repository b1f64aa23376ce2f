//! CPU time per multi-task training step (one thread), for comparisons on a busy machine
//! where wall-clock benchmarks are meaningless: the workload of `benches/mtl_step.rs`
//! (`metl_mtl::workload`).
//!
//! `cargo run --release -p metl-benches --example mtl_step_cputime -- 10,40 ew,pcgrad,mgda_ub 100 [mlp|conv4]`
//! (`all` for every strategy; the backbone defaults to the reference's MLP);
//! `mtl_step_cputime_reference.py` beside this file times the PyTorch reference the same way.

use metl_mtl::workload::{batches, workload, Backbone};

/// User + system CPU seconds of this process (`/proc/self/stat`, clock ticks of 10 ms).
fn cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> =
        stat.rsplit_once(')').ok_or("unexpected /proc/self/stat")?.1.split_whitespace().collect();
    Ok((fields[11].parse::<f64>()? + fields[12].parse::<f64>()?) / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if !(4..=5).contains(&args.len()) {
        return Err("usage: mtl_step_cputime <T,T,...> <strategy,...|all> <steps> [mlp|conv4]".into());
    }
    let backbone: Backbone = args.get(4).map_or(Ok(Backbone::Mlp), |b| b.parse())?;
    let tasks: Vec<usize> = args[1].split(',').map(str::parse).collect::<Result<_, _>>()?;
    let names: Vec<&str> = if args[2] == "all" {
        metl_mtl::registry::STRATEGIES.iter().map(|s| s.name).collect()
    } else {
        args[2].split(',').collect()
    };
    let steps: usize = args[3].parse()?;
    tch::set_num_threads(1);
    for &t in &tasks {
        let data = batches(backbone, t, 8);
        for name in &names {
            let mut w = workload(backbone, name, t)?;
            let mut run = |i: usize| w.step(&data[i % 8], &data[(i + 1) % 8]);
            for i in 0..5 {
                run(i)?;
            }
            let start = cpu_seconds()?;
            for i in 0..steps {
                run(i)?;
            }
            let per_step = (cpu_seconds()? - start) / steps as f64;
            println!(
                "{name:>16} T={t:3}: {:8.2} ms CPU/step  ({:7.1} steps/s uncontended, 1 thread)",
                per_step * 1e3,
                1.0 / per_step
            );
        }
    }
    Ok(())
}
