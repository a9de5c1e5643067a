//! Work spread over the machine's cores, with results in input order.
//!
//! Items are cut into runs of consecutive items; the calling thread and the others (one per
//! core, at most 8 in all) take runs from a shared counter, so a core slowed by other work
//! takes fewer. Each run's result is put back at its run's place, so the output never
//! depends on scheduling: it is what one thread going through the runs in order would have
//! produced.
//!
//! The other threads are started once and kept ([`pool`]): what one phase allocates on them
//! is freed by the next into heaps that are still alive, and its pages are used again. With
//! a thread started per call, each phase's objects stayed on the pages of threads that had
//! ended, and mimalloc took fresh pages for the next phase's (`lint` gave pages back by hand
//! after each run to stay under its memory floor; `preview` held 5-8 MiB more). A call made
//! while another holds the pool (two compilations at once in the webhook, or a call made
//! inside a run) starts scoped threads of its own, as before: no call waits for another's.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The number of threads worth starting: the cores, at most 8.
pub fn threads() -> usize {
    // Asked once: the standard library reads the cgroup's CPU quota from files each time,
    // which costs more than reading a small file of YAML.
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
    })
}

/// The threads besides the caller's that runs are worked on: started on first use, kept
/// for the life of the process; `None` when they could not be started.
fn pool() -> Option<&'static rayon_core::ThreadPool> {
    static POOL: OnceLock<Option<rayon_core::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon_core::ThreadPoolBuilder::new()
            .num_threads(threads().saturating_sub(1).max(1))
            .thread_name(|i| format!("ambassador-par-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Whether a call is working on the pool's threads (see the module comment).
static POOL_HELD: AtomicBool = AtomicBool::new(false);

/// The pool, held until dropped, if no other call holds it.
struct Held(&'static rayon_core::ThreadPool);

impl Held {
    fn take() -> Option<Held> {
        let pool = pool()?;
        POOL_HELD
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Held(pool))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        POOL_HELD.store(false, Ordering::Release);
    }
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
    match Held::take() {
        Some(held) => held.0.in_place_scope(|s| {
            for _ in 1..threads {
                s.spawn(|_| worker());
            }
            worker();
        }),
        None => std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(worker);
            }
            worker();
        }),
    }
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
    fn calls_at_once_and_calls_inside_runs_each_get_their_answer() {
        // Four callers at once: one holds the pool, the others start threads of their own;
        // each run also calls `runs` itself, as lowering does inside a table's runs.
        let items: Vec<u64> = (0..2000).collect();
        let expected: Vec<u64> = items
            .chunks(10)
            .map(|c| c.iter().map(|x| (0..*x % 50).sum::<u64>()).sum())
            .collect();
        std::thread::scope(|s| {
            let callers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        runs(&items, 10, |run| {
                            runs(run, 3, |inner| {
                                inner.iter().map(|x| (0..*x % 50).sum::<u64>()).sum::<u64>()
                            })
                            .into_iter()
                            .sum::<u64>()
                        })
                    })
                })
                .collect();
            for c in callers {
                assert_eq!(c.join().expect("a caller panicked"), expected);
            }
        });
    }

    /// Whether the pool can be taken within a few seconds (other tests may hold it a while).
    fn pool_comes_free() -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < until {
            if Held::take().is_some() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_panic_in_a_run_reaches_the_caller_and_frees_the_pool() {
        let items: Vec<u32> = (0..64).collect();
        let caught = std::panic::catch_unwind(|| {
            runs(&items, 1, |r| {
                assert!(r[0] != 40, "run 40 fails");
                r[0]
            })
        });
        assert!(caught.is_err());
        assert!(pool_comes_free(), "the pool is given back after a panic");
        // Later calls still work.
        let sums: Vec<u32> = runs(&items, 8, |r| r.iter().sum());
        assert_eq!(sums.iter().sum::<u32>(), items.iter().sum::<u32>());
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
