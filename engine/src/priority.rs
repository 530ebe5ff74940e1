//! CPU priorities of the server's threads, as Linux niceness (0 is a request's default; 19
//! the lowest). On a busy machine the kernel's scheduler gives a thread a share of a core in
//! proportion to its weight: at nice 3 about half a nice-0 thread's, at nice 5 about a third.
//! A thread can lower its own priority but, unprivileged, never raise it again, so each kind
//! of work has threads of its own: edits on the request threads at 0, reads at `READS`, the
//! subscribers' derived work (meshes, pyramids, counts) at `DERIVED`. The parallel parts go
//! with them: edits use rayon's global pool, derived work `mutation::background`'s pools, and
//! the read lane's kernels a pool at `READS` (`compute`).

use std::cell::Cell;
use std::sync::OnceLock;

/// GET and HEAD requests' threads (`tessera-api`'s read lane). A proofreader waits on each
/// edit; a viewer streams many reads and can take a few milliseconds more on a busy machine.
pub const READS: i32 = 3;

/// Subscribers' workers and their rayon pools (`mutation::background`).
pub const DERIVED: i32 = 5;

thread_local! {
    static READ_LANE: Cell<bool> = const { Cell::new(false) };
}

/// Makes the calling thread one of the read lane's: lowered to `READS`, and the kernels it
/// calls through `compute` run on the reads' pool.
pub fn join_read_lane() {
    lower_this_thread(READS);
    READ_LANE.set(true);
}

/// Runs `f`, a CPU kernel call, in the calling thread's lane: on a read lane thread in the
/// reads' rayon pool, whose threads run at `READS`, so that a read's parallel decoding does
/// not take the cores at an edit's priority; anywhere else right here, in whatever pool the
/// caller is in. Only kernels go there: they do no I/O, so a pool thread waiting for its own
/// parallel work and picking up another read's kernel meanwhile holds it for a kernel's
/// time, never for a request's.
pub fn compute<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if !READ_LANE.get() {
        return f();
    }
    static READS_POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    READS_POOL
        .get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .thread_name(|i| format!("read compute {i}"))
                .start_handler(|_| lower_this_thread(READS))
                .build()
                .expect("starting the reads' thread pool")
        })
        .install(f)
}

/// Lowers the calling thread's CPU priority to `nice`. Best effort: where the system refuses,
/// the thread keeps its priority and only the ordering under load is lost.
pub fn lower_this_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        const PRIO_PROCESS: i32 = 0;
        unsafe extern "C" {
            fn gettid() -> i32;
            fn setpriority(which: i32, who: u32, prio: i32) -> i32;
        }
        // SAFETY: both calls take plain integers; on Linux, PRIO_PROCESS with a thread id sets
        // that thread's niceness alone.
        unsafe { setpriority(PRIO_PROCESS, gettid() as u32, nice) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The calling thread's niceness.
#[cfg(target_os = "linux")]
pub fn this_thread() -> i32 {
    unsafe extern "C" {
        fn gettid() -> i32;
        fn getpriority(which: i32, who: u32) -> i32;
    }
    // SAFETY: plain integers in and out; PRIO_PROCESS (0) with a thread id reads that thread.
    unsafe { getpriority(0, gettid() as u32) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn here() -> (std::thread::ThreadId, i32) {
        (std::thread::current().id(), this_thread())
    }

    #[test]
    fn a_read_lane_thread_computes_in_the_reads_pool_and_others_in_place() {
        let caller = std::thread::current().id();
        assert_eq!(compute(here).0, caller, "a plain thread's kernel moved");
        let (lane, pooled) = std::thread::spawn(|| {
            join_read_lane();
            (here(), compute(here))
        })
        .join()
        .unwrap();
        assert_ne!(pooled.0, lane.0, "the read lane's kernel ran in place");
        // At least READS: a test run already niced further cannot raise a thread back.
        assert!(lane.1 >= READS && pooled.1 >= READS, "{lane:?} {pooled:?}");
    }
}
