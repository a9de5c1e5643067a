//! Work spread over the machine's cores, with results in input order.
//!
//! Items are cut into runs of consecutive items; scoped threads (one per core, at most 8)
//! take runs from a shared counter, so a core slowed by other work takes fewer. Each run's
//! result is put back at its run's place, so the output never depends on scheduling: it is
//! what one thread going through the runs in order would have produced.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The number of threads worth starting: the cores, at most 8.
pub fn threads() -> usize {
    // Asked once: the standard library reads the cgroup's CPU quota from files each time,
    // which costs more than reading a small file of YAML.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
    })
}

/// `f` over runs of `run_len` consecutive items, on all cores; the results in run order.
/// With one core or one run, everything happens on the calling thread.
pub fn runs<T, R, F>(items: &[T], run_len: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&[T]) -> R + Sync,
{
    runs_at(items, run_len, |_, run| f(run))
}

/// [`runs`], `f` also given the position in `items` of the run's first item.
pub fn runs_at<T, R, F>(items: &[T], run_len: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &[T]) -> R + Sync,
{
    if one_thread() {
        return vec![f(0, items)];
    }
    let run_len = run_len.max(1);
    let runs: Vec<(usize, &[T])> = items
        .chunks(run_len)
        .enumerate()
        .map(|(i, run)| (i * run_len, run))
        .collect();
    let threads = threads().min(runs.len());
    if threads <= 1 {
        return runs.into_iter().map(|(at, run)| f(at, run)).collect();
    }
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(runs.len()));
    let worker = || {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(at, run)) = runs.get(i) else { break };
            mine.push((i, f(at, run)));
        }
        done.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(worker);
        }
        worker();
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
thread_local! {
    /// Set by tests comparing what is worked out on all cores with what one thread going
    /// through the items in one run works out: every `runs` called on this thread (and
    /// within them) is one run on it.
    pub(crate) static ONE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn one_thread() -> bool {
    ONE_THREAD.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn one_thread() -> bool {
    false
}

/// Route tables with fewer routes are checked and encoded by one thread (each still beside
/// the others on all cores).
pub const PARALLEL_MIN_ROUTES: usize = 4096;

/// Whether one part of `n` items, among parts of `total` items worked on side by side, is
/// worth spreading over the cores itself: it has `min_parallel` items or more, and more
/// than half of all (the other parts cannot keep the other cores busy).
pub fn splits_alone(n: usize, total: usize, min_parallel: usize) -> bool {
    n >= min_parallel && n * 2 > total
}

/// A run length for `n` items of similar cost: one run when `n` is below `min_parallel`
/// (threads cost more than they save), else a few runs per thread so a busy core takes fewer.
pub fn run_len(n: usize, min_parallel: usize) -> usize {
    if n < min_parallel {
        n.max(1)
    } else {
        n.div_ceil(threads() * 8).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_input_order_whatever_the_run_length() {
        let items: Vec<u32> = (0..1000).collect();
        for len in [1, 3, 64, 999, 1000, 5000] {
            let sums: Vec<u32> = runs(&items, len, |r| {
                // Uneven work, so runs finish out of order on several cores.
                if r[0] % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                r.iter().sum()
            });
            let expected: Vec<u32> = items.chunks(len).map(|c| c.iter().sum()).collect();
            assert_eq!(sums, expected, "run length {len}");
        }
    }

    #[test]
    fn no_items_give_no_runs() {
        let none: [u8; 0] = [];
        assert!(runs(&none, 4, |r| r.len()).is_empty());
        assert_eq!(run_len(0, 10), 1);
        assert_eq!(run_len(5, 10), 5);
    }

    #[test]
    fn a_part_splits_alone_when_large_and_most_of_the_work() {
        assert!(splits_alone(5000, 6000, 4096));
        assert!(!splits_alone(5000, 10_000, 4096));
        assert!(!splits_alone(100, 100, 512));
    }
}
