//! The on-disk copy of the XID ledger (a hostPath directory in production), so XIDs seen while the API server
//! was unreachable survive a probe restart and are delivered exactly once when it is back.
//!
//! Written atomically (temporary file, fsync, rename): a crash leaves the old or the new ledger, never half of
//! one. An unreadable spool is moved aside (`*.corrupt`) and reported, not fatal.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::xid_ledger::XidLedger;

const FILE: &str = "xid-ledger.json";

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The directory or file could not be written.
    #[error("cannot write the XID spool in {dir} (is the hostPath mounted read-write?): {source}")]
    Write {
        /// The spool directory.
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but could not be read.
    #[error("cannot read the XID spool {path}: {source}")]
    Read {
        /// The spool file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What loading found.
#[derive(Debug)]
pub enum Loaded {
    /// A ledger saved by an earlier run.
    Ledger(Box<XidLedger>),
    /// No spool yet (first start on this disk).
    Empty,
    /// The file was not a ledger; it was moved to the given path.
    Corrupt {
        /// Where the unreadable file now is.
        moved_to: PathBuf,
        /// Why it could not be parsed.
        reason: String,
    },
}

/// A spool directory.
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// A spool in `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Spool {
        Spool { dir: dir.into() }
    }

    /// The spool file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Read the saved ledger.
    pub fn load(&self) -> Result<Loaded, SpoolError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Empty),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return self.move_aside(&path, e.to_string()),
            Err(source) => return Err(SpoolError::Read { path, source }),
        };
        match serde_json::from_str::<XidLedger>(&text) {
            Ok(ledger) => Ok(Loaded::Ledger(Box::new(ledger))),
            Err(e) => self.move_aside(&path, e.to_string()),
        }
    }

    fn move_aside(&self, path: &Path, reason: String) -> Result<Loaded, SpoolError> {
        let moved_to = path.with_extension("json.corrupt");
        fs::rename(path, &moved_to).map_err(|source| SpoolError::Write { dir: self.dir.clone(), source })?;
        Ok(Loaded::Corrupt { moved_to, reason })
    }

    /// Save `ledger` atomically.
    pub fn save(&self, ledger: &XidLedger) -> Result<(), SpoolError> {
        let err = |source| SpoolError::Write { dir: self.dir.clone(), source };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let body = serde_json::to_vec(ledger).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, self.path()).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuscope_crds::gpu_node_status::{XidEvent, XidSource};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn event(seq: u64) -> XidEvent {
        XidEvent {
            code: 79,
            time: Time(jiff::Timestamp::from_second(1_790_000_000).expect("valid")),
            pci_bus_id: "0000:3b:00.0".into(),
            gpu_uuid: None,
            gpu_instance: None,
            compute_instance: None,
            pid: None,
            process_name: None,
            message: Some("GPU has fallen off the bus.".into()),
            source: XidSource::Kmsg,
            boot_id: Some("b".into()),
            sequence: Some(seq),
            pods: None,
        }
    }

    #[test]
    fn a_saved_ledger_loads_back_identically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path().join("spool"));
        assert!(matches!(spool.load(), Ok(Loaded::Empty)));
        let mut ledger = XidLedger::new();
        ledger.record(event(1));
        spool.save(&ledger).expect("save");
        match spool.load() {
            Ok(Loaded::Ledger(loaded)) => assert_eq!(*loaded, ledger),
            other => panic!("expected the ledger, got {other:?}"),
        }
    }

    #[test]
    fn a_corrupt_spool_is_moved_aside_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path());
        fs::write(spool.path(), b"{ not json").expect("write");
        match spool.load() {
            Ok(Loaded::Corrupt { moved_to, reason }) => {
                assert!(moved_to.exists());
                assert!(!spool.path().exists());
                assert!(!reason.is_empty());
            }
            other => panic!("expected corrupt, got {other:?}"),
        }
        assert!(matches!(spool.load(), Ok(Loaded::Empty)));
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").expect("write");
        let err = Spool::new(&file).save(&XidLedger::new()).expect_err("a file is not a directory");
        assert!(err.to_string().contains("hostPath"), "{err}");
    }
}
