//! The heap while a batch is failing. Failed attempts keep documents for retry, and a write-off
//! streams millions of rows and failed records through chunk buffers of a few MiB; glibc serves
//! such sizes from its heap once its dynamic mmap threshold has grown, and keeps them after they
//! are freed, so the process would stay at its peak. While any batch is failing (from its first
//! failed attempt to its settlement), allocations from 256 KiB up come from `mmap` and go back
//! to the system when freed; afterwards the threshold goes back up, because healthy delivery
//! reuses its big buffers and would only pay for the mapping churn (measured: 14% more CPU on
//! the Elasticsearch benchmark with the low threshold always on).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Batches failing now.
static FAILING: AtomicUsize = AtomicUsize::new(0);

/// While this lives, large buffers are returned to the system when freed.
pub struct LeanHeap(());

/// Lowers the mmap threshold until the returned guard and every other one is dropped.
pub fn lean_heap() -> LeanHeap {
    if FAILING.fetch_add(1, Ordering::SeqCst) == 0 {
        set_mmap_threshold(256 * 1024);
    }
    LeanHeap(())
}

impl Drop for LeanHeap {
    fn drop(&mut self) {
        if FAILING.fetch_sub(1, Ordering::SeqCst) == 1 {
            // glibc's own ceiling for its dynamic threshold on 64-bit systems.
            set_mmap_threshold(32 * 1024 * 1024);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: i32) {
    // SAFETY: mallopt only changes glibc's allocation thresholds; it is thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_bytes: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_low_while_any_batch_is_failing() {
        let a = lean_heap();
        let b = lean_heap();
        assert_eq!(FAILING.load(Ordering::SeqCst), 2);
        drop(a);
        assert_eq!(FAILING.load(Ordering::SeqCst), 1);
        drop(b);
        assert_eq!(FAILING.load(Ordering::SeqCst), 0);
    }
}
