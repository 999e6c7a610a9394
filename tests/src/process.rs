//! Child processes for tests and the demo: output to a log file, each in a process group of its own, killed with
//! the thread that started them (`PR_SET_PDEATHSIG`) or when dropped, stopped gracefully on request.
//!
//! A process group of its own keeps a terminal's Ctrl-C (SIGINT to the foreground group) away from the children:
//! it reaches only the program that started them (the demo, a test run), which then stops them in order instead
//! of the control plane dying under the operator mid-write.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::control_plane::{HarnessError, io_err, tail};

/// How [`Process::stop`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited within the grace period: by itself (a handled SIGTERM), or by SIGTERM's default action when it
    /// had not installed a handler yet.
    Exited(ExitStatus),
    /// It was still running after the grace period and got SIGKILL.
    Killed,
}

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
        // SAFETY: prctl and setpgid are async-signal-safe and touch no memory of the parent. PR_SET_PDEATHSIG makes
        // the kernel kill the child when the spawning thread exits, so nothing outlives a failed or killed run;
        // setpgid(0, 0) makes the child the leader of a new process group (see the module comment).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setpgid(0, 0) != 0 {
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
                tail: exit_tail(&self.log, 30),
            }),
            _ => Ok(()),
        }
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Send `signal` (e.g. `libc::SIGINT`) to the process, unless it has already been reaped.
    pub fn signal(&mut self, signal: libc::c_int) -> std::io::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id()).map_err(std::io::Error::other)?;
        // SAFETY: sending a signal to our own, not yet reaped child has no memory effects; an unreaped child's pid
        // cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `limit` for the process to exit; its status when it did. Polls, blocking the calling thread.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
                _ => return None,
            }
        }
    }

    /// Stop it gracefully: SIGTERM, then wait up to `grace` before SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Stopped {
        if self.signal(libc::SIGTERM).is_ok()
            && let Some(status) = self.wait_exit(grace)
        {
            return Stopped::Exited(status);
        }
        self.kill();
        Stopped::Killed
    }

    /// [`Process::stop`], reduced to the exit code when it exited by itself: `None` when it had to be killed, or
    /// when SIGTERM ended it before it handled the signal.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        match self.stop(grace) {
            Stopped::Exited(status) => status.code(),
            Stopped::Killed => None,
        }
    }

    /// SIGKILL (as a crash would: no cleanup in the process) and reap. The whole process group gets it, so
    /// nothing the child started outlives it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait()
            && let Ok(pid) = i32::try_from(self.child.id())
        {
            // SAFETY: the child is not reaped, so its pid (and its group id, which it leads) is still ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a log before any stack backtrace: with `RUST_BACKTRACE` set, a program that returns
/// an error from `main` prints the message first and then dozens of frames, which would push the message out of
/// the tail.
fn exit_tail(log: &Path, lines: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let before = text.rfind("\nStack backtrace:").map_or(text.as_str(), |at| &text[..at]);
    let all: Vec<&str> = before.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
