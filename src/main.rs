//! The `stageload` binary: tune the allocator, parse the command line and run it.

fn main() -> std::process::ExitCode {
    tune_allocator();
    stageload::cli::main()
}

/// glibc serves large allocations from its heap and keeps them after they are freed, so a
/// process that once held many big buffers (bulk bodies, write-off chunks, reader blocks)
/// stays at its peak. From 256 KiB up, allocations come from `mmap` instead and go back to the
/// system when freed, which keeps the resident size near what is in use.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes glibc's allocation thresholds; called before any thread
    // starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
