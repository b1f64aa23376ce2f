//! `Ctrl-C` handling: the first interrupt asks the training loop to write a checkpoint
//! and stop; a second one ends the process at once.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    OnceLock,
};

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs the handler (once per process); later calls return the first result.
pub fn install() -> Result<(), String> {
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                if INTERRUPTS.fetch_add(1, Ordering::SeqCst) >= 1 {
                    eprintln!("\ninterrupted twice: exiting without a checkpoint");
                    std::process::exit(130);
                }
                eprintln!(
                    "\ninterrupted: writing a checkpoint, then stopping (Ctrl-C again to quit at once)"
                );
            })
            .map_err(|e| e.to_string())
        })
        .clone()
}

/// Whether an interrupt was received.
pub fn requested() -> bool {
    INTERRUPTS.load(Ordering::SeqCst) > 0
}
