//! SIGTERM/SIGINT, caught from the first line of `main`.
//!
//! `gpuscope_crds::observability::shutdown_signal()` installs its handlers only when first polled; the operator
//! used to poll it only once its caches had synced and its leader Lease manager was up, and until then a SIGTERM
//! (a rollout, a scale-down, a node drain) killed it with the default disposition instead of a clean exit.
//! [`Shutdown::install`] registers the handlers synchronously, so every later phase can ask or wait for it.

use std::future::Future;

use tokio::sync::watch;

/// Whether a shutdown was requested; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    requested: watch::Receiver<bool>,
}

impl Shutdown {
    /// Register the SIGTERM and SIGINT handlers now (must be called inside the Tokio runtime). From this call on
    /// neither signal kills the process; each is reported through the returned value.
    pub fn install() -> std::io::Result<Shutdown> {
        let (tx, rx) = watch::channel(false);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Created here, not in the task: creating the stream is what replaces the default disposition.
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
                    _ = int.recv() => tracing::info!("received SIGINT, shutting down"),
                }
                let _ = tx.send(true);
                // Keep the sender, so waiters never mistake a finished task for "no shutdown"; later signals
                // are absorbed (the shutdown is already under way and bounded by timeouts).
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    tracing::info!("already shutting down");
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("received Ctrl-C, shutting down");
                let _ = tx.send(true);
            }
            std::future::pending::<()>().await;
        });
        Ok(Shutdown { requested: rx })
    }

    /// A shutdown that is requested by hand (tests).
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

    /// Run `work` unless a shutdown is requested first: `None` means "stop now".
    pub async fn unless<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.wait() => None,
            out = work => Some(out),
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
    }
}
