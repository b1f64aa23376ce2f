//! Training progress: an indicatif bar on a terminal, periodic plain lines otherwise
//! (so CI logs stay readable), or nothing in quiet mode.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// An animated bar with steps/s, ETA and the latest metrics.
    Bar,
    /// One line every few seconds.
    Plain,
    /// Nothing.
    Quiet,
}

/// Reports the progress of a loop of `total` steps.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: u64,
    start: Instant,
    last_line: Instant,
    every: Duration,
}

impl Progress {
    /// Starts reporting a loop of `total` steps, labelled `label`.
    pub fn new(label: &str, total: u64, mode: ProgressMode) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        };
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(5));
            let style = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec:>12} ETA {eta:>4} {msg}",
            )
            .expect("the template is valid");
            bar.set_style(style);
            bar.set_prefix(label.to_owned());
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            plain: mode == ProgressMode::Plain,
            total,
            start: now,
            last_line: now,
            every: Duration::from_secs(5),
        }
    }

    /// Records that `step` steps are done, with the latest metrics as text.
    pub fn update(&mut self, step: u64, metrics: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(metrics.to_owned());
        } else if self.plain && (self.last_line.elapsed() >= self.every || step == self.total) {
            self.last_line = Instant::now();
            let elapsed = self.start.elapsed().as_secs_f64();
            let rate = step as f64 / elapsed.max(1e-9);
            let eta = (self.total.saturating_sub(step)) as f64 / rate.max(1e-9);
            eprintln!(
                "step {step}/{} ({:.1}%) {rate:.1} steps/s ETA {eta:.0}s {metrics}",
                self.total,
                100.0 * step as f64 / self.total.max(1) as f64
            );
        }
    }

    /// Ends the bar (leaving it on screen) and returns the elapsed time.
    pub fn finish(&self) -> Duration {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        self.start.elapsed()
    }
}
