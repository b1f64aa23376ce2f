//! The memory probe behind `memory_budget`: it reads this process's resident set and peak
//! (`/proc/self/status`), which every thread of the process moves. This test lives in a
//! binary of its own: beside the library's unit tests, running in parallel threads, another
//! test freeing memory while this one allocates could hide part of the allocation.

use metl_runner::memory::{resident, Probe};

#[test]
fn the_peak_of_this_process_is_measured_and_reset() {
    let Some((rss, peak)) = resident() else {
        eprintln!("skipped: no /proc/self/status");
        return;
    };
    assert!(rss > 0 && peak >= rss);
    let (before, _) = resident().unwrap();
    let probe = Probe::start();
    let block = vec![1u8; 64 << 20];
    std::hint::black_box(&block);
    if let Some(probe) = probe {
        let (k, line) = probe.finish(u64::MAX, 32).unwrap();
        assert_eq!(k, 0, "{line}");
        let (_, peak) = resident().unwrap();
        assert!(peak >= before + (60 << 20), "{line}");
    }
}
