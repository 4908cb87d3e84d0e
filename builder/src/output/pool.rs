//! The one worker pool of the output stage: chunks are read, compared, compressed and hashed
//! on every core, and written in order, so the bytes never depend on thread timing.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `work` on every item on up to `workers` threads and returns the results in item
/// order. A worker takes the next item when it is free, so one that drew cheap items (holes)
/// does not sit idle while another compresses data. Each thread keeps its own `S` (reused
/// buffers) across items; the first error is returned.
pub(super) fn map_in_order<I, T, S, F>(items: &[I], workers: usize, work: F) -> io::Result<Vec<T>>
where
    I: Sync,
    T: Send,
    S: Default,
    F: Fn(&I, &mut S) -> io::Result<T> + Sync,
{
    let next = AtomicUsize::new(0);
    let work = &work;
    let results: Vec<io::Result<Vec<(usize, T)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1).min(items.len()))
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut scratch = S::default();
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, work(item, &mut scratch)?));
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("an output worker thread panicked")))
            })
            .collect()
    });
    let mut slots: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
    for result in results {
        for (i, t) in result? {
            slots[i] = Some(t);
        }
    }
    slots
        .into_iter()
        .map(|t| t.ok_or_else(|| io::Error::other("an output worker skipped an item")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_and_errors_surface() {
        let items: Vec<u32> = (0..100).collect();
        let out = map_in_order(&items, 4, |i, count: &mut u32| {
            *count += 1;
            Ok(i * 2)
        })
        .expect("map");
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let err = map_in_order(&items, 3, |i, _: &mut ()| {
            if *i == 57 {
                Err(io::Error::other("item 57"))
            } else {
                Ok(*i)
            }
        })
        .expect_err("an error");
        assert!(err.to_string().contains("57"));
    }
}
