//! The real binary, signalled while it is still starting: it must exit 0, not die of the signal.
//!
//! The "API server" here accepts connections and never answers, so the operator stays in its startup (waiting
//! for its caches to sync) for as long as the test likes; the first accepted connection proves it got there.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

struct Silent {
    listener: TcpListener,
    /// Held open and never answered.
    accepted: Vec<TcpStream>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        Silent { listener, accepted: Vec::new() }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("addr").port()
    }

    /// Wait until the operator has connected (it is now waiting for a list that never comes).
    fn wait_for_connection(&mut self, child: &mut Child, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.accepted.push(stream);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("the operator exited before connecting: {status}");
            }
            assert!(Instant::now() < deadline, "the operator never connected to the API server");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn kubeconfig(port: u16, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpuscope-operator-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: silent\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: silent\n  context:\n    cluster: silent\n    user: nobody\ncurrent-context: silent\n\
         users:\n- name: nobody\n  user: {{}}\n"
    );
    std::fs::write(&path, config).expect("kubeconfig");
    path
}

fn wait_for_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the operator did not exit within {within:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signalled_during_startup_exits_cleanly(signal: &str) {
    let mut api = Silent::start();
    let config = kubeconfig(api.port(), signal);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpuscope-operator"))
        .env("KUBECONFIG", &config)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .args(["--namespace", "gpuscope-test", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the operator");
    api.wait_for_connection(&mut child, Duration::from_secs(60));
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill");
    assert!(sent.success(), "kill -{signal} failed");
    let status = wait_for_exit(&mut child, Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(config.parent().unwrap_or(&config));
    assert_eq!(status.code(), Some(0), "{signal} while waiting for the caches must be a clean exit, got {status}");
}

#[test]
fn sigterm_while_waiting_for_the_caches_exits_cleanly() {
    signalled_during_startup_exits_cleanly("TERM");
}

#[test]
fn sigint_while_waiting_for_the_caches_exits_cleanly() {
    signalled_during_startup_exits_cleanly("INT");
}
