//! The fake `libnvidia-ml.so.1` (node-probe/fake-nvml/fake_nvml.c), compiled on demand so tests drive the probe's
//! real NVML backend without a GPU.
//!
//! Each test builds its own copy into its own directory and writes the config beside it (`fake-nvml.conf`): the
//! library finds its config and events file next to itself, so parallel tests need no process-wide environment.
//! See the comment at the top of the C file for the config keys.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::control_plane::workspace_root;

/// The C source, relative to the workspace root.
pub const SOURCE: &str = "node-probe/fake-nvml/fake_nvml.c";
/// The library's file name (what NVML is loaded by).
pub const LIBRARY_NAME: &str = "libnvidia-ml.so.1";
/// The config file the library reads at nvmlInit when `FAKE_NVML_CONFIG` is unset, beside the library.
pub const CONFIG_FILE: &str = "fake-nvml.conf";
/// The XID events file the library reads when `FAKE_NVML_EVENTS` is unset, beside the library.
pub const EVENTS_FILE: &str = "fake-nvml.events";

/// Why the fake library could not be built or fed.
#[derive(Debug, thiserror::Error)]
pub enum FakeNvmlError {
    /// No C compiler.
    #[error("cannot run the C compiler `{compiler}`: {source}; install one (apt-get install gcc) or set CC")]
    Compiler {
        /// The compiler command tried.
        compiler: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The compiler rejected the source.
    #[error("compiling {source_file} failed ({status}):\n{stderr}")]
    Compile {
        /// The C file.
        source_file: PathBuf,
        /// The compiler's exit status.
        status: String,
        /// The compiler's diagnostics.
        stderr: String,
    },
    /// A symbol to omit that the source does not know (a typo would otherwise build a complete library).
    #[error("{SOURCE} has no FAKE_NVML_OMIT_{0} switch; pass an exported NVML name such as nvmlDeviceGetFieldValues")]
    UnknownSymbol(String),
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FakeNvmlError + 'a {
    move |source| FakeNvmlError::Io { what, path: path.to_path_buf(), source }
}

/// Compile the fake library into `out_dir/libnvidia-ml.so.1`, leaving out each NVML symbol named in `omit`
/// (e.g. `["nvmlDeviceGetFieldValues"]`), and return its path. Uses `$CC`, else `cc`.
pub fn build_fake_nvml(out_dir: &Path, omit: &[&str]) -> Result<PathBuf, FakeNvmlError> {
    let source_file = workspace_root().join(SOURCE);
    let source = fs::read_to_string(&source_file).map_err(io_error("read", &source_file))?;
    for symbol in omit {
        let valid = !symbol.is_empty() && symbol.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid || !source.contains(&format!("FAKE_NVML_OMIT_{symbol}\n")) {
            return Err(FakeNvmlError::UnknownSymbol((*symbol).to_owned()));
        }
    }
    fs::create_dir_all(out_dir).map_err(io_error("create", out_dir))?;
    let library = out_dir.join(LIBRARY_NAME);
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cmd = Command::new(&compiler);
    cmd.args(["-shared", "-fPIC", "-fvisibility=hidden", "-O1", "-Wall", "-o"]).arg(&library);
    for symbol in omit {
        cmd.arg(format!("-DFAKE_NVML_OMIT_{symbol}"));
    }
    cmd.arg(&source_file).arg("-ldl");
    let output = cmd.output().map_err(|source| FakeNvmlError::Compiler { compiler: compiler.clone(), source })?;
    if !output.status.success() {
        return Err(FakeNvmlError::Compile {
            source_file,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(library)
}

/// A built fake library with its config and events files, all in one directory the caller owns.
#[derive(Debug, Clone)]
pub struct FakeNvml {
    library: PathBuf,
    dir: PathBuf,
}

impl FakeNvml {
    /// Build the library into `dir` (omitting `omit`), write `config` beside it and create an empty events file.
    pub fn build(dir: &Path, omit: &[&str], config: &str) -> Result<FakeNvml, FakeNvmlError> {
        let library = build_fake_nvml(dir, omit)?;
        let fake = FakeNvml { library, dir: dir.to_path_buf() };
        fake.write_config(config)?;
        let events = fake.events_path();
        fs::write(&events, "").map_err(io_error("create", &events))?;
        Ok(fake)
    }

    /// The library's path, for `NvmlConfig::library_path`.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The config file the library reads at nvmlInit.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The file nvmlEventSetWait_v2 reads XIDs from.
    pub fn events_path(&self) -> PathBuf {
        self.dir.join(EVENTS_FILE)
    }

    /// Replace the config; the library reads it at the next nvmlInit.
    pub fn write_config(&self, config: &str) -> Result<(), FakeNvmlError> {
        let path = self.config_path();
        fs::write(&path, config).map_err(io_error("write", &path))
    }

    /// Append one XID on the GPU with NVML index `gpu`; a waiting event set returns it within a few ms.
    pub fn append_xid(&self, gpu: u32, code: u32) -> Result<(), FakeNvmlError> {
        let path = self.events_path();
        let mut file = OpenOptions::new().append(true).create(true).open(&path).map_err(io_error("open", &path))?;
        // One write of a whole line, so the reader never sees half of it as complete.
        file.write_all(format!("{gpu} {code}\n").as_bytes()).map_err(io_error("append to", &path))
    }
}
