//! CPU seconds from `getrusage`, for the benchmarks that print CPU per GB.

fn rusage_seconds(who: libc::c_int) -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF and RUSAGE_CHILDREN are valid.
    let u = unsafe {
        libc::getrusage(who, u.as_mut_ptr());
        u.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// This process's CPU seconds (user + system, every thread).
pub fn self_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_SELF)
}

/// CPU seconds of this process's children that were waited for.
#[allow(dead_code)]
pub fn children_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_CHILDREN)
}
