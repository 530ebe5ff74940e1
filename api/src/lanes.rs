//! Where a request's blocking work runs. Writes (edits above all) run on tokio's blocking pool
//! at the process's priority; reads (`RequestKind::Read`, the rule access control uses) on a
//! runtime of their own whose threads run at `priority::READS`. On a busy machine the kernel
//! then gives an edit's thread about twice a reader's share of a core, so a closed loop of
//! viewers cannot crowd out a proofreader's merge; with cores to spare nothing changes. The
//! reads' parallel parts (rayon's global pool, decoding blocks) still run at the process's
//! priority: handing their kernels to a pool of their own at READS was measured and dropped
//! (docs/benchmarks.md, "Edit latency under load").

use std::sync::OnceLock;

use tessera_engine::priority;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// Starts `f` on a blocking thread of the read lane (`read`) or the write lane.
pub fn spawn<T: Send + 'static>(
    read: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    match read {
        true => reads().spawn_blocking(f),
        false => tokio::task::spawn_blocking(f),
    }
}

fn reads() -> &'static Handle {
    static READS: OnceLock<Runtime> = OnceLock::new();
    READS
        .get_or_init(|| {
            // Only its blocking pool is used; the one worker thread idles.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("tessera read")
                .on_thread_start(|| priority::lower_this_thread(priority::READS))
                .enable_all()
                .build()
                .expect("starting the read lane's runtime")
        })
        .handle()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_run_below_writes() {
        let write = spawn(false, priority::this_thread).await.unwrap();
        let read = spawn(true, priority::this_thread).await.unwrap();
        // At least READS: a test run already niced further cannot raise a thread back.
        assert!(read >= priority::READS, "read lane at nice {read}");
        // Lower than the writes' unless those already run at READS or below it.
        assert!(
            read > write || write >= priority::READS,
            "read lane at {read}, write lane at {write}"
        );
    }
}
