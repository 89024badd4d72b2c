//! Bounded concurrency without an async runtime: at most `n` threads take the jobs in order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `f` on every job with at most `n` at once and returns the results in the jobs' order.
/// After the first error no new job starts, and that error is returned.
pub fn map_concurrent<T, R, E, F>(jobs: Vec<T>, n: usize, f: F) -> Result<Vec<R>, E>
where
    T: Send,
    R: Send,
    E: Send,
    F: Fn(T) -> Result<R, E> + Sync,
{
    let count = jobs.len();
    if n <= 1 || count <= 1 {
        return jobs.into_iter().map(f).collect();
    }
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
    let failure: Mutex<Option<(usize, E)>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..n.min(count) {
            s.spawn(|| loop {
                if failed.load(Ordering::SeqCst) {
                    return;
                }
                // A poisoned lock means another worker panicked; the scope re-raises it.
                let Some((i, job)) = queue.lock().ok().and_then(|mut q| q.next()) else {
                    return;
                };
                match f(job) {
                    Ok(r) => {
                        if let Ok(mut rs) = results.lock() {
                            rs[i] = Some(r);
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        if let Ok(mut slot) = failure.lock() {
                            // The earliest job's error, so that the message does not depend
                            // on thread timing more than it must.
                            if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                                *slot = Some((i, e));
                            }
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some((_, e)) = failure.into_inner().unwrap_or(None) {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.expect("every job ran: none failed"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn results_keep_the_jobs_order_and_concurrency_is_bounded() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out: Result<Vec<usize>, ()> = map_concurrent((0..40).collect(), 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(i * 2)
        });
        assert_eq!(out.unwrap(), (0..40).map(|i| i * 2).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!((2..=3).contains(&peak), "peak concurrency {peak}");
    }

    #[test]
    fn the_first_error_stops_the_rest() {
        let started = AtomicUsize::new(0);
        let out: Result<Vec<usize>, String> = map_concurrent((0..100).collect(), 2, |i| {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 5 {
                Err(format!("job {i} failed"))
            } else {
                Ok(i)
            }
        });
        assert_eq!(out.unwrap_err(), "job 5 failed");
        assert!(started.load(Ordering::SeqCst) < 100);
    }
}
