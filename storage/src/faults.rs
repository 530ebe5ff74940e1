//! A store whose writes fail as a full disk's do while a switch file exists: how the tests see
//! what the server does when its disk fills (and what it leaves when space returns) without
//! filling a disk. The server wraps its stores in it only when `TESSERA_FAULT_DISK_FULL` names
//! the switch file.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{Error, KvStore, Result, WriteBatch};

pub struct DiskFullSwitch {
    inner: Arc<dyn KvStore>,
    switch: PathBuf,
}

impl DiskFullSwitch {
    pub fn new(inner: Arc<dyn KvStore>, switch: PathBuf) -> DiskFullSwitch {
        DiskFullSwitch { inner, switch }
    }

    /// Fails, writing nothing, while the switch file exists.
    fn check(&self) -> Result<()> {
        if self.switch.exists() {
            return Err(Error::NoSpace(format!(
                "No space left on device (injected: {} exists)",
                self.switch.display()
            )));
        }
        Ok(())
    }
}

impl KvStore for DiskFullSwitch {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check()?;
        self.inner.put(key, value)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.check()?;
        self.inner.delete(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.inner.scan(start, end, visit)
    }

    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut dyn FnMut(usize, &[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.inner.scan_ranges(ranges, visit)
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        self.check()?;
        self.inner.write(batch)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    fn refresh(&self) -> Result<bool> {
        self.inner.refresh()
    }

    fn engine_name(&self) -> &'static str {
        self.inner.engine_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn writes_fail_while_the_switch_exists_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let switch = dir.path().join("full");
        let s = DiskFullSwitch::new(Arc::new(MemoryStore::new()), switch.clone());
        s.put(b"a", b"1").unwrap();
        std::fs::write(&switch, b"").unwrap();
        let mut b = WriteBatch::new();
        b.put(b"b".to_vec(), b"2".to_vec());
        assert!(matches!(s.write(b.clone()), Err(Error::NoSpace(_))));
        assert!(matches!(s.put(b"c", b"3"), Err(Error::NoSpace(_))));
        assert!(matches!(s.delete(b"a"), Err(Error::NoSpace(_))));
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"b").unwrap(), None);
        std::fs::remove_file(&switch).unwrap();
        s.write(b).unwrap();
        assert_eq!(s.get(b"b").unwrap(), Some(b"2".to_vec()));
    }
}
