//! glibc malloc settings for a process whose memory is a long-lived cache filled by bursts of short-lived parsing.
//!
//! By default glibc gives each thread that allocates an arena of its own (up to 8 per core), and raises its mmap
//! threshold whenever a large buffer is freed, so that the ~1 MB pages of a relist are later carved out of the
//! arenas instead of being mapped and unmapped. The cache is filled from tokio's worker threads in turn, so its
//! objects and the free holes between them end up spread over several arenas that none can give back. One arena
//! and a fixed 128 KiB mmap and trim threshold (glibc's own initial values) keep the heap compact. At 5,000 nodes,
//! the same binary restarted on one fleet: peak RSS 57-59 MiB with these settings, 62-65 MiB without; answers
//! about one node as fast, fleet-wide answers (which allocate more) 4-17 % slower (README, facade benchmark).
//!
//! Whoever runs the facade can still tune malloc through glibc's environment variables; when any of them is set
//! the facade leaves malloc alone.

/// glibc's environment variables for malloc settings: when one is set, its owner decides.
pub const GLIBC_MALLOC_ENV: [&str; 4] =
    ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"];

/// Arenas: one. Only tokio's workers (one per core) allocate much, and a tool call holds the lock briefly.
const ARENA_MAX: i32 = 1;
/// Allocations from this size are mapped on their own and unmapped when freed (a relist's pages, answer buffers).
const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;
/// Free memory at the top of the heap beyond this is returned to the system.
const TRIM_THRESHOLD_BYTES: i32 = 128 * 1024;

/// What [`tune`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// The settings above are in force.
    Applied,
    /// Left alone: the named environment variable tunes malloc.
    LeftToEnvironment(&'static str),
    /// glibc refused a setting (named); the others may be in force.
    Refused(&'static str),
    /// Not glibc: nothing to tune.
    NotGlibc,
}

/// Apply the settings, unless `env` (a variable lookup) shows someone tuning malloc already. Call it first thing
/// in `main`, before any thread is started: an arena limit does not shrink arenas that exist.
pub fn tune(env: impl Fn(&str) -> Option<String>) -> Tuning {
    if let Some(name) = GLIBC_MALLOC_ENV.into_iter().find(|name| env(name).is_some()) {
        return Tuning::LeftToEnvironment(name);
    }
    apply()
}

impl Tuning {
    /// Say in the log what [`tune`] did (it runs before logging is set up).
    pub fn log(&self) {
        match self {
            Tuning::Applied => {
                tracing::debug!(arenas = ARENA_MAX, mmap_threshold_bytes = MMAP_THRESHOLD_BYTES, "malloc tuned")
            }
            Tuning::LeftToEnvironment(name) => {
                tracing::info!(variable = name, "malloc left to the environment's settings")
            }
            Tuning::Refused(name) => {
                tracing::warn!(setting = name, "glibc refused a malloc setting; memory use may be higher")
            }
            Tuning::NotGlibc => {}
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> Tuning {
    let settings = [
        ("M_ARENA_MAX", libc::M_ARENA_MAX, ARENA_MAX),
        ("M_MMAP_THRESHOLD", libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        ("M_TRIM_THRESHOLD", libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    ];
    for (name, param, value) in settings {
        // SAFETY: mallopt only changes malloc's parameters; it is thread-safe and takes plain integers.
        if unsafe { libc::mallopt(param, value) } != 1 {
            return Tuning::Refused(name);
        }
    }
    Tuning::Applied
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_of_glibcs_own_variables_leaves_malloc_to_its_owner() {
        for name in GLIBC_MALLOC_ENV {
            let env = |var: &str| (var == name).then(|| "2".to_string());
            assert_eq!(tune(env), Tuning::LeftToEnvironment(name));
        }
    }

    #[test]
    fn glibc_accepts_the_settings() {
        let expected =
            if cfg!(all(target_os = "linux", target_env = "gnu")) { Tuning::Applied } else { Tuning::NotGlibc };
        assert_eq!(tune(|_| None), expected);
    }
}
