//! Child processes for tests: output to a log file, killed with the thread that started them
//! (`PR_SET_PDEATHSIG`) or when dropped, stopped gracefully on request.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::control_plane::{HarnessError, io_err, tail};

/// A running child process.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Start `cmd`, appending its stdout and stderr to `log`.
    pub fn spawn(name: impl Into<String>, mut cmd: Command, log: PathBuf) -> Result<Process, HarnessError> {
        let name = name.into();
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err(format!("open {}", log.display())))?;
        let err = out.try_clone().map_err(io_err("clone log handle"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it makes the kernel kill the
        // child when the spawning thread exits, so nothing outlives a failed or killed test run.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io_err(format!("start {name}")))?;
        Ok(Process { name, child, log })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// An error when the process has exited.
    pub fn check_running(&mut self) -> Result<(), HarnessError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(HarnessError::Exited {
                component: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: tail(&self.log, 30),
            }),
            _ => Ok(()),
        }
    }

    /// SIGTERM, then wait up to `grace` before SIGKILL. Returns the exit code when it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: sending a signal to our own child's pid has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Path of a workspace binary: next to the running executable (a bin such as `gpuscope-bench`), or next to its
/// folder (a test binary lives in `deps/`). `cargo build --bins` puts them there.
pub fn workspace_binary(name: &str) -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().map_err(io_err("locate the running binary"))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidates = [dir.join(name), dir.parent().map(|p| p.join(name)).unwrap_or_default()];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| HarnessError::MissingBinary {
        what: "a gpuscope binary",
        path: candidates[1].clone(),
        hint: "build the programs first: cargo build --bins (tests/scripts/test-all.sh does)",
    })
}

/// Start a process that lives as long as the test process (e.g. one operator shared by several tests). It is
/// spawned from a parked thread, because `PR_SET_PDEATHSIG` fires when the *spawning thread* exits.
pub fn spawn_for_process_lifetime(name: &str, cmd: Command, log: PathBuf) -> Result<(), HarnessError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = name.to_string();
    std::thread::Builder::new()
        .name(format!("keep-{name}"))
        .spawn(move || match Process::spawn(name, cmd, log) {
            Ok(process) => {
                let _ = tx.send(Ok(()));
                let _keep = process;
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(io_err("spawn a keeper thread"))?;
    rx.recv().unwrap_or_else(|_| Err(HarnessError::Shared("keeper thread died".into())))
}
