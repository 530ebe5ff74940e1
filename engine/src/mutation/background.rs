//! Where subscribers' derived work runs: their worker threads, and a rayon pool of their own
//! for the parallel parts (meshing, pyramids), at a lower CPU priority than requests.
//!
//! A commit wakes the subscribers while its request is still answering, and on a busy machine
//! their meshing took the cores from the answer and from readers: the merge of a 10M-voxel body
//! spent 1–5 ms in its handler and up to 13 ms in the server. At nice 5 the kernel's scheduler
//! gives a request thread about three times a subscriber thread's share of a busy core, and
//! the derived work still has every core that requests leave idle. Nice 10 answered about as
//! fast but let the kept meshes fall further behind a closed loop of readers
//! (docs/benchmarks.md). Requests keep the global rayon pool (`crate::priority` has every
//! kind of thread's priority).
//!
//! Subscribers that others wait for from inside their own deliveries (`Subscription::awaited`:
//! the pyramid, which kept meshes at a coarse scale settle on) get a second pool. In one shared
//! pool, a thread whose pyramid job waits in a `par_iter` steals the next injected job, a
//! waiter's, which then blocks on the pyramid below it on the same stack: a deadlock (seen in
//! `mesh_sync`). Threads only steal within their own pool.

use std::sync::OnceLock;

use crate::priority::{self, DERIVED};

/// Runs `f` in a background pool (the awaited subscribers' own with `awaited`), so that its
/// rayon calls run there too.
pub(crate) fn install<R: Send>(awaited: bool, f: impl FnOnce() -> R + Send) -> R {
    static SHARED: OnceLock<rayon::ThreadPool> = OnceLock::new();
    static AWAITED: OnceLock<rayon::ThreadPool> = OnceLock::new();
    match awaited {
        false => pool(&SHARED, "sync compute"),
        true => pool(&AWAITED, "awaited compute"),
    }
    .install(f)
}

fn pool(
    cell: &'static OnceLock<rayon::ThreadPool>,
    name: &'static str,
) -> &'static rayon::ThreadPool {
    cell.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(move |i| format!("{name} {i}"))
            .start_handler(|_| priority::lower_this_thread(DERIVED))
            .build()
            .expect("starting a subscribers' thread pool")
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_pool_runs_below_the_caller_and_leaves_the_caller_alone() {
        let before = priority::this_thread();
        let in_pool = install(false, priority::this_thread);
        assert!(
            install(true, priority::this_thread) >= DERIVED,
            "awaited pool thread"
        );
        // At least DERIVED: a test run already niced further cannot raise a thread back.
        assert!(in_pool >= DERIVED, "pool thread at nice {in_pool}");
        assert_eq!(
            priority::this_thread(),
            before,
            "the caller's priority changed"
        );
    }
}
