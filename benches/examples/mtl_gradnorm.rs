//! Every metl strategy on the synthetic regression of GradNorm (Chen et al. 2018,
//! section 4): `fᵢ(x) = σᵢ tanh((B + εᵢ) x)`, 250 inputs, 100 outputs, `σᵢ` spanning two
//! orders of magnitude, a 4-layer 100-unit ReLU trunk and one affine head per task, MSE,
//! Adam. Writes per-task test-loss curves and task-weight curves per strategy.
//!
//! ```text
//! cargo run --release -p metl-benches --example mtl_gradnorm -- \
//!     --tasks 2,10 --steps 10000 --out runs/mtl_gradnorm
//! ```
//!
//! Options: `--tasks` (default `2,10`: σ = [1, 100], and ten σ geometric from 1 to 100),
//! `--steps` (default 10000, 100 epochs of the 10,000 training samples), `--batch` (100),
//! `--lr` (Adam, 1e-3), `--gradnorm-alpha` (0.12, the paper's value for this problem),
//! `--eval-every` (100 steps), `--strategies` (default all), `--threads` (libtorch threads,
//! 2; use 1 on a machine shared with other jobs), `--out`.
//! Outputs: `losses_T{T}.png` (test loss of every task relative to its initial value, log
//! scale), `weights_T{T}.png`, `results.json`, `table.md`.

use metl_data::{
    multitask::{SyntheticRegression, SyntheticRegressionConfig},
    MultiTaskBatch, MultiTaskDataset, Split,
};
use metl_models::{
    mlp::MlpConfig,
    optim::{Adam, AdamConfig},
    HardSharing, MultiTaskModel, Params, TaskLoss,
};
use metl_mtl::{registry::STRATEGIES, MtlStep, Setup, StrategyConfig};
use metl_runner::plot::{colors, draw_panels, Mark, Panel, Series};
use std::{fmt::Write as _, path::PathBuf};
use tch::{nn, Device, Kind, Tensor};

struct Args {
    tasks: Vec<usize>,
    steps: usize,
    batch: usize,
    lr: f64,
    gradnorm_alpha: f64,
    eval_every: usize,
    strategies: Vec<String>,
    threads: i32,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        tasks: vec![2, 10],
        steps: 10_000,
        batch: 100,
        lr: 1e-3,
        gradnorm_alpha: 0.12,
        eval_every: 100,
        strategies: STRATEGIES.iter().map(|s| s.name.to_owned()).collect(),
        threads: 2,
        out: PathBuf::from("runs/mtl_gradnorm"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--tasks" => {
                args.tasks =
                    value.split(',').map(|s| s.parse()).collect::<Result<_, _>>().map_err(|e| bad(&e))?
            }
            "--steps" => args.steps = value.parse().map_err(|e| bad(&e))?,
            "--batch" => args.batch = value.parse().map_err(|e| bad(&e))?,
            "--lr" => args.lr = value.parse().map_err(|e| bad(&e))?,
            "--gradnorm-alpha" => args.gradnorm_alpha = value.parse().map_err(|e| bad(&e))?,
            "--eval-every" => args.eval_every = value.parse().map_err(|e| bad(&e))?,
            "--strategies" => args.strategies = value.split(',').map(str::to_owned).collect(),
            "--threads" => args.threads = value.parse().map_err(|e| bad(&e))?,
            "--out" => args.out = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

/// One run: (step, test loss per task) and (step, mean weight per task over the window).
struct Curves {
    losses: Vec<(usize, Vec<f64>)>,
    weights: Vec<(usize, Vec<f64>)>,
    error: Option<String>,
}

fn train(args: &Args, data: &SyntheticRegression, name: &str) -> Curves {
    let t = data.num_tasks();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = HardSharing::new(
        MlpConfig::new([250, 100, 100, 100, 100]).build().expect("valid widths"),
        (0..t).map(|_| MlpConfig::new([100, 100]).build().expect("valid widths")).collect(),
    );
    let mut curves = Curves { losses: Vec::new(), weights: Vec::new(), error: None };
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let params = model.init(&vs.root().sub("model"))?;
        let mut config = StrategyConfig::default_for(name)?;
        if let StrategyConfig::Gradnorm(c) = &mut config {
            c.alpha = args.gradnorm_alpha;
        }
        let strategy = config.build(&Setup { num_tasks: t, path: vs.root().sub("mtl"), seed: 0 })?;
        let mut adam = Adam::new(&Params::from_var_store(&vs, "")?, AdamConfig::with_lr(args.lr))?;
        let mut trainer = MtlStep::new(model, params, vec![TaskLoss::Mse; t], strategy)?;
        // Whole splits in memory (the generator computes targets on the fly, which would
        // dominate the step time); shuffled mini-batches of the training split per epoch.
        let all = |split: Split| data.batch(split, &(0..data.len(split)).collect::<Vec<_>>(), Device::Cpu);
        let (train_all, val_all, test) = (all(Split::Train)?, all(Split::Val)?, all(Split::Test)?);
        let n = train_all.len() as i64;
        let batches_per_epoch = n / args.batch as i64;
        let pick = |b: &MultiTaskBatch, rows: &Tensor| MultiTaskBatch {
            inputs: b.inputs.index_select(0, rows),
            targets: b.targets.iter().map(|t| t.index_select(0, rows)).collect(),
            mask: b.mask.index_select(0, rows),
            task_ids: None,
        };
        let needs_validation = trainer.strategy().needs().validation;
        let mut order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let mut window = vec![0.0; t];
        curves.losses.push((0, trainer.evaluate(&test)?.0));
        for step in 1..=args.steps {
            let in_epoch = (step as i64 - 1) % batches_per_epoch;
            if in_epoch == 0 && step > 1 {
                trainer.end_epoch();
                order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
            }
            let batch = pick(&train_all, &order.narrow(0, in_epoch * args.batch as i64, args.batch as i64));
            let val = needs_validation.then(|| {
                pick(
                    &val_all,
                    &Tensor::randint(val_all.len() as i64, [args.batch as i64], (Kind::Int64, Device::Cpu)),
                )
            });
            let report = trainer.step(&batch, &mut adam, val.as_ref())?;
            window.iter_mut().zip(&report.weights).for_each(|(a, w)| *a += w);
            if step % args.eval_every == 0 || step == args.steps {
                curves.losses.push((step, trainer.evaluate(&test)?.0));
                let n = (step - curves.weights.last().map_or(0, |w| w.0)) as f64;
                curves.weights.push((step, window.iter().map(|w| w / n).collect()));
                window.iter_mut().for_each(|w| *w = 0.0);
            }
        }
        Ok(())
    })();
    curves.error = result.err().map(|e| e.to_string());
    curves
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.out)?;
    tch::set_num_threads(args.threads);
    let mut json = serde_json::Map::new();
    let mut table = String::new();
    for &t in &args.tasks {
        let config = if t == 2 {
            SyntheticRegressionConfig::t2()
        } else {
            SyntheticRegressionConfig::geometric(t, 1.0, 100.0)
        };
        let data = SyntheticRegression::new(config)?;
        writeln!(table, "\n**T = {t}** ({} steps of batch {}, Adam lr {}): test loss of each task relative to its initial value\n", args.steps, args.batch, args.lr)?;
        writeln!(table, "| strategy | mean Lᵢ/Lᵢ(0) | worst Lᵢ/Lᵢ(0) | final weights |")?;
        writeln!(table, "| --- | --- | --- | --- |")?;
        let (mut loss_panels, mut weight_panels) = (Vec::new(), Vec::new());
        let mut per_t = serde_json::Map::new();
        for name in &args.strategies {
            let started = std::time::Instant::now();
            let curves = train(&args, &data, name);
            eprintln!(
                "T={t} {name}: {:.1} s{}",
                started.elapsed().as_secs_f64(),
                curves.error.as_deref().map(|e| format!(" (error: {e})")).unwrap_or_default()
            );
            let initial = &curves.losses[0].1;
            let ratios: Vec<f64> = curves
                .losses
                .last()
                .map_or(vec![], |l| l.1.iter().zip(initial).map(|(a, b)| a / b).collect());
            let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
            let worst = ratios.iter().cloned().fold(f64::NAN, f64::max);
            let last_weights = curves
                .weights
                .last()
                .map(|w| w.1.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            match &curves.error {
                None => writeln!(table, "| {name} | {mean:.4} | {worst:.4} | {last_weights} |")?,
                Some(e) => writeln!(table, "| {name} | error: {e} | | |")?,
            }
            let series = |points: &[(usize, Vec<f64>)], relative: bool| -> Vec<Series> {
                (0..t)
                    .map(|i| Series {
                        label: format!("σ={:.3}", data.config().sigmas[i]),
                        points: points
                            .iter()
                            .map(|(s, v)| (*s as f64, if relative { v[i] / initial[i] } else { v[i] }))
                            .collect(),
                        mark: Mark::Line,
                        color: colors::pick(i),
                    })
                    .collect()
            };
            loss_panels.push(Panel {
                title: name.clone(),
                x_label: "step".into(),
                y_label: "L/L(0)".into(),
                log_y: true,
                series: series(&curves.losses, true),
            });
            weight_panels.push(Panel {
                title: name.clone(),
                x_label: "step".into(),
                y_label: "weight".into(),
                log_y: false,
                series: series(&curves.weights, false),
            });
            per_t.insert(
                name.clone(),
                serde_json::json!({
                    "steps": curves.losses.iter().map(|l| l.0).collect::<Vec<_>>(),
                    "test_losses": curves.losses.iter().map(|l| l.1.clone()).collect::<Vec<_>>(),
                    "weights": curves.weights.iter().map(|w| w.1.clone()).collect::<Vec<_>>(),
                    "error": curves.error,
                }),
            );
        }
        json.insert(format!("T{t}"), serde_json::Value::Object(per_t));
        let columns = 6;
        let size = |n: usize| (columns as u32 * 360, n.div_ceil(columns) as u32 * 260);
        draw_panels(
            &args.out.join(format!("losses_T{t}.png")),
            &loss_panels,
            columns,
            size(loss_panels.len()),
        )?;
        draw_panels(
            &args.out.join(format!("weights_T{t}.png")),
            &weight_panels,
            columns,
            size(weight_panels.len()),
        )?;
    }
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(args.out.join("table.md"), &table)?;
    println!("{table}");
    Ok(())
}
