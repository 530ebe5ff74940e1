//! CPU priorities of the server's threads, as Linux niceness (0 is a request's default; 19
//! the lowest). On a busy machine the kernel's scheduler gives a thread a share of a core in
//! proportion to its weight: at nice 3 about half a nice-0 thread's, at nice 5 about a third.
//! A thread can lower its own priority but, unprivileged, never raise it again, so each kind
//! of work has threads of its own: edits on the request threads at 0, reads at `READS`, the
//! subscribers' derived work (meshes, pyramids, counts) at `DERIVED`.

/// Reads' threads (`tessera-api`'s read lane: GET, HEAD and the few POSTs that only read). A
/// proofreader waits on each edit; a viewer streams many reads and can take a few
/// milliseconds more on a busy machine.
pub const READS: i32 = 3;

/// Subscribers' workers and their rayon pools (`mutation::background`).
pub const DERIVED: i32 = 5;

/// `which` for a single thread: with a thread id, Linux sets or reads that thread alone.
#[cfg(target_os = "linux")]
const PRIO_PROCESS: i32 = 0;

#[cfg(target_os = "linux")]
unsafe extern "C" {
    fn gettid() -> i32;
    fn setpriority(which: i32, who: u32, prio: i32) -> i32;
    fn getpriority(which: i32, who: u32) -> i32;
}

/// Lowers the calling thread's CPU priority to `nice`. Best effort: where the system refuses,
/// the thread keeps its priority and only the ordering under load is lost.
pub fn lower_this_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: both calls take plain integers.
        unsafe { setpriority(PRIO_PROCESS, gettid() as u32, nice) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The calling thread's niceness.
#[cfg(target_os = "linux")]
pub fn this_thread() -> i32 {
    // SAFETY: plain integers in and out.
    unsafe { getpriority(PRIO_PROCESS, gettid() as u32) }
}
