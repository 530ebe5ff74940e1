//! The resume file: a key line naming the load, then one `slab <level> <layer>` line per slab
//! the server acknowledged. A rerun of the same load skips those slabs; a different load
//! (server, uuid, instance, input, geometry) refuses the file instead of trusting it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const MAGIC: &str = "tessera-load 1";

pub struct Resume {
    path: PathBuf,
    done: HashSet<(usize, usize)>,
    file: File,
}

impl Resume {
    /// Opens (or starts) the resume file of the load described by `key` (one line).
    pub fn open(path: &Path, key: &str) -> anyhow::Result<Resume> {
        let header = format!("{MAGIC} {key}");
        let name = path.display();
        let mut done = HashSet::new();
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading resume file {name}")),
        };
        let fresh = match existing {
            // Empty: a run that stopped before its first line.
            Some(text) if !text.trim().is_empty() => {
                let mut lines = text.lines();
                let first = lines.next().unwrap_or_default();
                if !first.starts_with(MAGIC) {
                    bail!("{name} is not a tessera load resume file; pass another --resume-file");
                }
                if first != header {
                    bail!(
                        "resume file {name} belongs to a different load:\n  it has:  {}\n  this is: {key}\ndelete it to start over, or pass another --resume-file",
                        first[MAGIC.len()..].trim()
                    );
                }
                for line in lines {
                    // A line cut short by a crash is ignored; its slab is simply sent again.
                    let mut words = line.split_whitespace();
                    if let (Some("slab"), Some(l), Some(j), None) =
                        (words.next(), words.next(), words.next(), words.next())
                        && let (Ok(l), Ok(j)) = (l.parse(), j.parse())
                    {
                        done.insert((l, j));
                    }
                }
                false
            }
            _ => true,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| {
                format!("opening resume file {name} (--resume-file puts it elsewhere)")
            })?;
        if fresh {
            file.set_len(0)?;
            writeln!(file, "{header}")
                .and_then(|_| file.flush())
                .with_context(|| format!("writing resume file {name}"))?;
        } else {
            // Start on a fresh line after a possibly cut-short last line.
            writeln!(file)?;
        }
        Ok(Resume {
            path: path.to_path_buf(),
            done,
            file,
        })
    }

    pub fn is_done(&self, level: usize, layer: usize) -> bool {
        self.done.contains(&(level, layer))
    }

    pub fn done(&self) -> &HashSet<(usize, usize)> {
        &self.done
    }

    /// Records an acknowledged slab, durably.
    pub fn mark(&mut self, level: usize, layer: usize) -> anyhow::Result<()> {
        writeln!(self.file, "slab {level} {layer}")
            .and_then(|_| self.file.flush())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("writing resume file {}", self.path.display()))?;
        self.done.insert((level, layer));
        Ok(())
    }

    /// The load finished: the file is no longer needed.
    pub fn remove(self) -> anyhow::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
            .with_context(|| format!("removing resume file {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_slabs_and_refuses_other_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy.tessera-load");
        let mut r = Resume::open(&path, "server=a uuid=b").unwrap();
        assert!(!r.is_done(0, 1));
        r.mark(0, 1).unwrap();
        r.mark(2, 0).unwrap();
        drop(r);
        // A crash mid-line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        write!(f, "slab 0").unwrap();
        drop(f);
        let mut r = Resume::open(&path, "server=a uuid=b").unwrap();
        assert_eq!(r.done().len(), 2);
        assert!(r.is_done(0, 1) && r.is_done(2, 0));
        r.mark(0, 3).unwrap();
        drop(r);
        let r = Resume::open(&path, "server=a uuid=b").unwrap();
        assert_eq!(r.done().len(), 3);
        drop(r);
        let err = format!(
            "{:#}",
            Resume::open(&path, "server=a uuid=c").err().unwrap()
        );
        assert!(err.contains("different load"), "{err}");
        Resume::open(&path, "server=a uuid=b")
            .unwrap()
            .remove()
            .unwrap();
        assert!(!path.exists());
    }
}
