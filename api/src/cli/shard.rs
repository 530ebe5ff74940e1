//! `--shard I/N`: worker I of N of one batch job (a Slurm array, a Kubernetes indexed Job), each
//! building its own part of the same outputs, with no coordinator: the parts tile the job, each
//! worker marks its part done, and the worker that finds every part done publishes the outputs.
//! Rerunning any worker, or all of them, is safe: it writes the same bytes again.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole job in one process.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// This worker's part of `units` units of work: contiguous, and the parts of all workers
    /// tile `0..units` exactly.
    pub fn range(&self, units: usize) -> Range<usize> {
        units * self.index / self.count..units * (self.index + 1) / self.count
    }

    fn marker(&self, dir: &Path, job: &str) -> PathBuf {
        dir.join(format!(
            ".{job}.shard-{}-of-{}.done",
            self.index, self.count
        ))
    }
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Shard> {
        let parse = |p: &str| {
            p.trim()
                .parse::<usize>()
                .with_context(|| format!("--shard {s:?}: {p:?} is not a whole number"))
        };
        let Some((i, n)) = s.split_once('/') else {
            bail!("--shard {s:?} must be I/N, e.g. 0/4 for the first of four workers");
        };
        let (index, count) = (parse(i)?, parse(n)?);
        if count == 0 || index >= count {
            bail!("--shard {s:?}: I must be below N, and N at least 1");
        }
        Ok(Shard { index, count })
    }
}

/// Marks this worker's part of `job` (in `dir`) done, and when every part is, runs `publish`
/// (which names the outputs) and removes the marks. Answers whether this worker published.
/// Two workers finishing together may both publish: `publish` must be idempotent.
pub fn finish(
    dir: &Path,
    job: &str,
    shard: Shard,
    publish: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let mine = shard.marker(dir, job);
    std::fs::write(&mine, b"").with_context(|| format!("writing {}", mine.display()))?;
    let all = (0..shard.count).map(|index| {
        Shard {
            index,
            count: shard.count,
        }
        .marker(dir, job)
    });
    if !all.clone().all(|m| m.exists()) {
        return Ok(false);
    }
    publish()?;
    for m in all {
        let _ = std::fs::remove_file(m);
    }
    Ok(true)
}

/// Renames `partial` to `path` if it is still there (another worker may have published it).
pub fn publish_file(partial: &Path, path: &Path) -> anyhow::Result<()> {
    match std::fs::rename(partial, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.exists() => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("renaming {} to {}", partial.display(), path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_tile_the_work() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["", "4/4", "1/0", "a/2", "1", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?}");
        }
        for (units, count) in [(0, 3), (5, 3), (8, 8), (7, 10), (1000, 7)] {
            let mut next = 0;
            for index in 0..count {
                let r = Shard { index, count }.range(units);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, units);
        }
        assert_eq!(Shard::WHOLE.range(9), 0..9);
    }

    #[test]
    fn the_last_worker_to_finish_publishes_once_all_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let published = std::cell::Cell::new(0);
        let publish = || {
            published.set(published.get() + 1);
            Ok(())
        };
        let shard = |index| Shard { index, count: 3 };
        assert!(!finish(dir.path(), "job", shard(2), publish).unwrap());
        assert!(!finish(dir.path(), "job", shard(0), publish).unwrap());
        assert!(
            !finish(dir.path(), "job", shard(0), publish).unwrap(),
            "a rerun"
        );
        assert!(finish(dir.path(), "job", shard(1), publish).unwrap());
        assert_eq!(published.get(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "marks removed"
        );
        assert!(finish(dir.path(), "job", Shard::WHOLE, publish).unwrap());
    }
}
