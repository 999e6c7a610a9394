//! SIGTERM/SIGINT, caught from the first line of `main`.
//!
//! A handler that is registered only when a future is first polled (as `tokio::signal` futures are) leaves a
//! window: until the program gets round to polling it (after NVML is initialised, the client is built, the
//! caches have synced...), a SIGTERM from a rollout, a scale-down or a node drain kills the process with the
//! default disposition instead of a clean exit. [`Shutdown::install`] registers the handlers synchronously, so
//! every later phase can ask for a shutdown ([`Shutdown::requested`]), wait for one ([`Shutdown::wait`]) or be cut
//! short by one ([`Shutdown::unless`]).

use std::future::Future;

use tokio::sync::watch;

/// Whether a shutdown was requested; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    requested: watch::Receiver<bool>,
}

impl Shutdown {
    /// Register the SIGTERM and SIGINT handlers now (must be called inside the Tokio runtime, e.g. under
    /// `Runtime::enter`). From this call on neither signal kills the process; each is reported through the
    /// returned value.
    pub fn install() -> std::io::Result<Shutdown> {
        let (tx, rx) = watch::channel(false);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Created here, not in the task: creating the stream is what replaces the default disposition.
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                let first = tokio::select! {
                    s = term.recv() => s.map(|()| "SIGTERM"),
                    s = int.recv() => s.map(|()| "SIGINT"),
                };
                if let Some(name) = first {
                    tracing::info!("received {name}, shutting down");
                    let _ = tx.send(true);
                    // Later signals are absorbed: the shutdown is already under way (and bounded by timeouts).
                    loop {
                        let again = tokio::select! {
                            s = term.recv() => s,
                            s = int.recv() => s,
                        };
                        if again.is_none() {
                            break;
                        }
                        tracing::info!("already shutting down");
                    }
                }
                // Keep the sender (the runtime is going away if we get here), so waiters never mistake a
                // finished task for "no shutdown".
                std::future::pending::<()>().await;
                drop(tx);
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("received Ctrl-C, shutting down");
                let _ = tx.send(true);
            }
            std::future::pending::<()>().await;
            drop(tx);
        });
        Ok(Shutdown { requested: rx })
    }

    /// A shutdown that is requested by hand: send `true` (tests, and programs with their own reasons to stop).
    pub fn manual() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown { requested: rx })
    }

    /// Whether a shutdown has been requested.
    pub fn requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Resolves once a shutdown is requested (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.requested.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            // The sender is gone without a request: nothing can request one any more.
            std::future::pending::<()>().await;
        }
    }

    /// [`Shutdown::wait`] as an owned future, for APIs that want `Send + 'static` (graceful HTTP shutdown).
    pub fn wait_owned(&self) -> impl Future<Output = ()> + Send + 'static {
        let shutdown = self.clone();
        async move { shutdown.wait().await }
    }

    /// Run `work` unless a shutdown is requested first: `None` means "stop now" (`work` is dropped).
    pub async fn unless<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.wait() => None,
            out = work => Some(out),
        }
    }

    /// Run blocking `work` (a driver's initialisation, which can take seconds or hang on a wedged device) on a
    /// thread of its own, unless a shutdown is requested first. On `Ok(None)` the thread is abandoned: it finishes
    /// (or hangs) alone, and cannot hold up the exit the way a `spawn_blocking` task holds up the runtime's.
    pub async fn unless_blocking<T, W>(&self, name: &str, work: W) -> std::io::Result<Option<T>>
    where
        T: Send + 'static,
        W: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let _ = tx.send(work());
        })?;
        match self.unless(rx).await {
            None => Ok(None),
            Some(Ok(out)) => Ok(Some(out)),
            Some(Err(_)) => Err(std::io::Error::other(format!("the {name} thread panicked"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn work_finishes_when_no_shutdown_is_requested() {
        let (_tx, shutdown) = Shutdown::manual();
        assert_eq!(shutdown.unless(async { 7 }).await, Some(7));
        assert!(!shutdown.requested());
    }

    #[tokio::test]
    async fn a_requested_shutdown_interrupts_work_that_would_never_finish() {
        let (tx, shutdown) = Shutdown::manual();
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.unless(std::future::pending::<()>()).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx.send(true);
        let out = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(out, Ok(Ok(None))), "{out:?}");
        assert!(shutdown.requested());
    }

    #[tokio::test]
    async fn a_shutdown_requested_earlier_is_not_missed() {
        let (tx, shutdown) = Shutdown::manual();
        let _ = tx.send(true);
        let out = tokio::time::timeout(Duration::from_secs(5), shutdown.unless(async { 1 })).await;
        assert_eq!(out.ok(), Some(None), "a request made before the wait still stops the work");
        let owned = tokio::time::timeout(Duration::from_secs(5), shutdown.wait_owned()).await;
        assert!(owned.is_ok(), "the owned wait sees it too");
    }

    #[tokio::test]
    async fn blocking_work_is_abandoned_on_a_shutdown_and_returned_otherwise() {
        let (tx, shutdown) = Shutdown::manual();
        let done = shutdown.unless_blocking("test-quick", || 3).await;
        assert_eq!(done.ok().flatten(), Some(3));

        let (keep_blocked, never_rx) = std::sync::mpsc::channel::<()>();
        let hung = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                // Blocks until this test ends and drops the sender.
                shutdown.unless_blocking("test-hung", move || never_rx.recv().is_ok()).await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx.send(true);
        let out = tokio::time::timeout(Duration::from_secs(5), hung).await;
        assert!(matches!(out, Ok(Ok(Ok(None)))), "{out:?}");
        drop(keep_blocked);

        let panicked = Shutdown::manual().1.unless_blocking("test-panic", || panic!("boom")).await;
        assert!(panicked.is_err_and(|e| e.to_string().contains("test-panic")));
    }

    /// The real handlers, with a real SIGTERM sent to this test process right after `install` returns, before
    /// anything is polled: if `install` left the default disposition in place, the whole test binary would die.
    #[cfg(unix)]
    #[tokio::test]
    async fn install_catches_a_sigterm_sent_before_anything_is_polled() {
        let shutdown = Shutdown::install().expect("install the handlers");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let out = tokio::time::timeout(Duration::from_secs(10), shutdown.unless(std::future::pending::<()>())).await;
        assert_eq!(out.ok(), Some(None), "the SIGTERM is reported as a shutdown request");
        assert!(shutdown.requested());
    }
}
