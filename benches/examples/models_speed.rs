//! A short speed table of the metl-models workloads on one device: milliseconds per
//! meta-batch, per-task loop against task-batched (median of `--reps` runs after two
//! warm-up runs). `cargo xtask gpu-check` runs it on CUDA, where it adds bfloat16 and the
//! channels-last memory format.
//!
//! ```text
//! cargo run --release -p metl-benches --example models_speed -- [--device cpu|cuda] [--reps N] [--threads N] [--cpu-time]
//! ```

use metl_benches::models::{MetaBatch, Path, Set};
use metl_models::batching::{set_task_batching, ConvFormat, TaskBatching};
use std::time::Instant;
use tch::{Device, Kind};

struct Options {
    device: Device,
    reps: usize,
    threads: i32,
    /// Measure the process's CPU time (user + system, Linux) instead of wall time: stable on
    /// a machine shared with other work, where wall time mostly measures the others.
    cpu_time: bool,
}

/// The value of `flag`, a positive integer.
fn positive<T: std::str::FromStr + PartialOrd + From<u8>>(
    flag: &str,
    value: Option<String>,
) -> Result<T, String> {
    value
        .and_then(|v| v.parse().ok())
        .filter(|v| *v >= T::from(1))
        .ok_or_else(|| format!("{flag}: expected a positive integer"))
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options { device: Device::Cpu, reps: 5, threads: 2, cpu_time: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--device" => {
                options.device = match args.next().as_deref() {
                    Some("cpu") => Device::Cpu,
                    Some("cuda") => Device::Cuda(0),
                    other => return Err(format!("--device {other:?}: expected cpu or cuda")),
                }
            }
            "--reps" => options.reps = positive("--reps", args.next())?,
            "--threads" => options.threads = positive("--threads", args.next())?,
            "--cpu-time" => options.cpu_time = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: models_speed [--device cpu|cuda] [--reps N] [--threads N] [--cpu-time]"
                ))
            }
        }
    }
    if options.device.is_cuda() && !tch::Cuda::is_available() {
        return Err("--device cuda: libtorch finds no CUDA device (is this libtorch built with CUDA?)".into());
    }
    Ok(options)
}

/// The process's CPU time (user + system) in seconds, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("--cpu-time needs Linux's /proc");
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

fn cpu_seconds_if(on: bool) -> f64 {
    if on {
        cpu_seconds()
    } else {
        0.0
    }
}

/// The median milliseconds per run of `f` over `reps` repetitions, after two warm-up runs;
/// a repetition runs `f` often enough to take at least 200 ms (the CPU clock ticks in 10 ms).
fn median_ms(options: &Options, mut f: impl FnMut() -> f64) -> f64 {
    let sync = || {
        if let Device::Cuda(i) = options.device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let warm_up = Instant::now();
    for _ in 0..2 {
        f();
    }
    sync();
    let runs = (0.4 / warm_up.elapsed().as_secs_f64().max(1e-6)).ceil().max(1.0) as usize;
    let mut times: Vec<f64> = (0..options.reps)
        .map(|_| {
            let (start, cpu) = (Instant::now(), cpu_seconds_if(options.cpu_time));
            for _ in 0..runs {
                assert!(f().is_finite(), "non-finite loss");
            }
            sync();
            let seconds = if options.cpu_time { cpu_seconds() - cpu } else { start.elapsed().as_secs_f64() };
            seconds * 1e3 / runs as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

struct Table {
    rows: Vec<(String, String, f64, Option<f64>)>,
}

impl Table {
    fn compare(&mut self, options: &Options, workload: &str, f: impl Fn(Path) -> f64) {
        let looped = median_ms(options, || f(Path::Loop));
        let batched = median_ms(options, || f(Path::Batched));
        self.rows.push((workload.to_owned(), "per-task loop".into(), looped, None));
        self.rows.push((workload.to_owned(), "task-batched".into(), batched, Some(looped / batched)));
    }

    fn print(&self, options: &Options) {
        println!(
            "\nmetl-models speed on {:?} ({} reps, median {}; {} CPU threads)\n",
            options.device,
            options.reps,
            if options.cpu_time { "CPU time" } else { "wall time" },
            options.threads
        );
        println!("| workload | variant | ms per meta-batch | speed-up over the loop |");
        println!("| --- | --- | ---: | ---: |");
        for (workload, variant, ms, speedup) in &self.rows {
            let speedup = speedup.map_or(String::new(), |s| format!("{s:.2}×"));
            println!("| {workload} | {variant} | {ms:.2} | {speedup} |");
        }
    }
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    };
    tch::set_num_threads(options.threads);
    let mut table = Table { rows: Vec::new() };
    let mlp = MetaBatch::mlp_sinusoid(options.device);
    table.compare(&options, "MLP sinusoid, 25 tasks: forward+backward", |p| {
        mlp.forward_backward(Set::Support, p)
    });
    table.compare(&options, "MLP sinusoid, 25 tasks: MAML 2nd order", |p| mlp.maml_step(p, true));
    let mut conv4 = MetaBatch::conv4_omniglot(options.device, 32);
    table.compare(&options, "Conv4 5w1s, 32 tasks: support f+b", |p| conv4.forward_backward(Set::Support, p));
    table.compare(&options, "Conv4 5w1s, 32 tasks: query f+b", |p| conv4.forward_backward(Set::Query, p));
    table.compare(&options, "Conv4 5w1s, 32 tasks: MAML 2nd order", |p| conv4.maml_step(p, true));
    table.compare(&options, "Conv4 5w1s, 32 tasks: MAML 1st order", |p| conv4.maml_step(p, false));
    if options.device.is_cuda() {
        for (format, name) in [(ConvFormat::ChannelsLast, "channels-last"), (ConvFormat::Contiguous, "NCHW")]
        {
            set_task_batching(TaskBatching { format, ..TaskBatching::default() });
            let ms = median_ms(&options, || conv4.maml_step(Path::Batched, true));
            table.rows.push((
                "Conv4 5w1s, 32 tasks: MAML 2nd order".into(),
                format!("task-batched, {name}"),
                ms,
                None,
            ));
        }
        set_task_batching(TaskBatching::default());
        for (kind, name) in [(Kind::BFloat16, "bf16"), (Kind::Half, "fp16")] {
            conv4.to_kind(kind);
            let ms = median_ms(&options, || conv4.maml_step(Path::Batched, true));
            table.rows.push((
                "Conv4 5w1s, 32 tasks: MAML 2nd order".into(),
                format!("task-batched, {name}"),
                ms,
                None,
            ));
        }
    }
    let tasks = if options.device.is_cuda() { 32 } else { 2 };
    let resnet = MetaBatch::resnet12_mini_imagenet(options.device, tasks);
    let name = format!("ResNet-12 5w1s 84×84, {tasks} tasks: support f+b");
    table.compare(&options, &name, |p| resnet.forward_backward(Set::Support, p));
    table.print(&options);
}
