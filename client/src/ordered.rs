//! Work on many servers (or hosts) at once, shown in a fixed order: each
//! result is handed on as soon as it and every one before it are done, so
//! a slow first item delays the output, never mixes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

/// Runs `work` on every item, on up to `jobs` threads, and gives each
/// result to `report` in the items' order. With no thread to be had, the
/// items are worked on here, one after another.
pub fn run_in_order<T, R>(
    items: Vec<T>,
    jobs: usize,
    work: impl Fn(&T) -> R + Send + Sync + 'static,
    mut report: impl FnMut(R),
) where
    T: Send + Sync + 'static,
    R: Send + 'static,
{
    let count = items.len();
    let items = Arc::new(items);
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let (done, results) = mpsc::channel::<(usize, R)>();
    let worker = {
        let (items, work, next) = (Arc::clone(&items), Arc::clone(&work), Arc::clone(&next));
        move |done: mpsc::Sender<(usize, R)>| {
            move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    if done.send((index, work(item))).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let threads: Vec<_> = (0..jobs.clamp(1, count.max(1)))
        .filter_map(|_| {
            // A small stack: the work keeps its state on the heap, and a
            // fan-out starts many.
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(worker.clone()(done.clone()))
                .ok()
        })
        .collect();
    if threads.is_empty() {
        worker(done.clone())();
    }
    drop(done);
    let mut waiting: Vec<Option<R>> = (0..count).map(|_| None).collect();
    let mut shown = 0;
    for (index, result) in results {
        waiting[index] = Some(result);
        while let Some(result) = waiting.get_mut(shown).and_then(Option::take) {
            report(result);
            shown += 1;
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_come_in_item_order_whatever_finishes_first() {
        let mut seen = Vec::new();
        run_in_order(
            vec![30u64, 0, 10, 0],
            4,
            |&ms| {
                thread::sleep(Duration::from_millis(ms));
                ms
            },
            |ms| seen.push(ms),
        );
        assert_eq!(seen, [30, 0, 10, 0]);
    }
}
