//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager as child
//! processes, with token auth (an admin and one identity per gpuscope component), RBAC, service-account keys and
//! a serving certificate from a throwaway CA.
//!
//! Binaries come from `$KUBEBUILDER_ASSETS` (envtest's convention) when it names a folder with `etcd` and
//! `kube-apiserver`, otherwise from the cache that `tests/scripts/build-control-plane.sh` fills (and runs when the
//! cache is empty). Every child gets `PR_SET_PDEATHSIG`, so it dies with the thread that started it even when a
//! test panics or the test process is killed.

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::process::Process;

/// Version of the control plane the build script produces.
pub const KUBE_VERSION: &str = "1.20.2";
/// Namespace the component identities' usernames refer to (`system:serviceaccount:<ns>:<name>`), matching the
/// ServiceAccounts `config/` installs.
pub const INSTALL_NAMESPACE: &str = "gpuscope-system";

/// Who a client acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Cluster admin (`system:masters`).
    Admin,
    /// The node probe's ServiceAccount.
    Probe,
    /// The operator's ServiceAccount.
    Operator,
    /// The MCP facade's ServiceAccount.
    Mcp,
}

impl Identity {
    /// Every identity the token file knows.
    pub const ALL: [Identity; 4] = [Identity::Admin, Identity::Probe, Identity::Operator, Identity::Mcp];

    /// Short name, used in file names and tokens.
    pub fn name(self) -> &'static str {
        match self {
            Identity::Admin => "admin",
            Identity::Probe => "gpuscope-probe",
            Identity::Operator => "gpuscope-operator",
            Identity::Mcp => "gpuscope-mcp",
        }
    }

    /// The username the API server sees. Components use their ServiceAccount's username (with no groups), so
    /// the RBAC bindings in `config/` apply to them exactly as in a cluster.
    pub fn username(self) -> String {
        match self {
            Identity::Admin => "admin".to_string(),
            other => format!("system:serviceaccount:{INSTALL_NAMESPACE}:{}", other.name()),
        }
    }

    fn token(self) -> String {
        format!("{}-token-{}", self.name(), std::process::id())
    }
}

/// What went wrong bringing up or talking to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A binary the control plane needs is missing.
    #[error("{what} not found at {path}: {hint}")]
    MissingBinary { what: &'static str, path: PathBuf, hint: &'static str },
    /// The build script failed.
    #[error(
        "building the control plane failed ({status}); run tests/scripts/build-control-plane.sh by hand to see why"
    )]
    Build { status: String },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A component did not become ready in time.
    #[error("{component} not ready after {waited:?}; last lines of {log}:\n{tail}")]
    NotReady { component: &'static str, waited: Duration, log: PathBuf, tail: String },
    /// A child process exited early.
    #[error("{component} exited early ({status}); last lines of {log}:\n{tail}")]
    Exited { component: String, status: String, log: PathBuf, tail: String },
    /// The kubeconfig could not be turned into a client.
    #[error("kube client: {0}")]
    Client(String),
    /// `openssl` failed while making certificates.
    #[error("openssl {args} failed: {stderr}")]
    Openssl { args: String, stderr: String },
    /// The shared control plane failed to start earlier in this process.
    #[error("the shared control plane failed to start: {0}")]
    Shared(String),
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// Where the control-plane binaries live.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub apiserver: PathBuf,
    /// kube-controller-manager, when available (envtest folders often lack it).
    pub controller_manager: Option<PathBuf>,
    /// The API server's minor version (flags differ across releases).
    pub minor: u32,
}

impl Binaries {
    /// Find (or build) the binaries: `$KUBEBUILDER_ASSETS` first, then the version-keyed cache.
    pub fn locate() -> Result<Binaries, HarnessError> {
        if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from) {
            let etcd = dir.join("etcd");
            let apiserver = dir.join("kube-apiserver");
            if etcd.is_file() && apiserver.is_file() {
                let kcm = dir.join("kube-controller-manager");
                let minor = apiserver_minor(&apiserver)?;
                return Ok(Binaries { etcd, apiserver, controller_manager: kcm.is_file().then_some(kcm), minor });
            }
        }
        let dir = cache_dir();
        let apiserver = dir.join("kube-apiserver");
        if !apiserver.is_file() {
            build_control_plane()?;
        }
        let minor = apiserver_minor(&apiserver)?;
        let bins = Binaries {
            etcd: dir.join("etcd"),
            apiserver,
            controller_manager: Some(dir.join("kube-controller-manager")),
            minor,
        };
        for (what, path) in [("etcd", &bins.etcd), ("kube-apiserver", &bins.apiserver)] {
            if !path.is_file() {
                return Err(HarnessError::MissingBinary {
                    what,
                    path: path.clone(),
                    hint: "run tests/scripts/build-control-plane.sh, or set KUBEBUILDER_ASSETS",
                });
            }
        }
        Ok(bins)
    }
}

/// Reads "Kubernetes v1.20.2" from `kube-apiserver --version`.
fn apiserver_minor(apiserver: &Path) -> Result<u32, HarnessError> {
    let out =
        Command::new(apiserver).arg("--version").output().map_err(io_err(format!("run {}", apiserver.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v1."))
        .and_then(|rest| rest.split('.').next())
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| HarnessError::Client(format!("cannot read the version of {}: {text:?}", apiserver.display())))
}

/// The cache folder the build script fills: `$GPUSCOPE_CACHE` or `~/.cache/gpuscope`, keyed by version.
pub fn cache_dir() -> PathBuf {
    let root = std::env::var_os("GPUSCOPE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("gpuscope")
    });
    root.join(format!("kube-{KUBE_VERSION}"))
}

/// The workspace root (where `config/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn build_control_plane() -> Result<(), HarnessError> {
    let script = workspace_root().join("tests/scripts/build-control-plane.sh");
    eprintln!("[control-plane] no cached binaries: building them with {} (first run only)", script.display());
    let status = Command::new("bash").arg(&script).status().map_err(io_err(format!("run {}", script.display())))?;
    if status.success() { Ok(()) } else { Err(HarnessError::Build { status: status.to_string() }) }
}

fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("bind a free loopback port"))?;
    l.local_addr().map(|a| a.port()).map_err(io_err("read a bound port"))
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[derive(Default)]
struct Procs {
    etcd: Option<Process>,
    apiserver: Option<Process>,
    controller_manager: Option<Process>,
}

/// A running control plane. Dropping it kills its processes and removes its data directory.
pub struct ControlPlane {
    dir: PathBuf,
    bins: Binaries,
    etcd_port: u16,
    etcd_peer_port: u16,
    apiserver_port: u16,
    procs: Mutex<Procs>,
    keep_dir: bool,
    audit: bool,
}

/// One audit record per request, at the end of its handling, without bodies: enough to count by user and verb.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived, ResponseStarted, Panic]\nrules:\n- level: Metadata\n";

static SHARED: OnceLock<Result<&'static ControlPlane, String>> = OnceLock::new();

impl ControlPlane {
    /// The control plane shared by every test in this process, started on first use (with the CRDs from
    /// `config/crd/` applied). Its processes live on a dedicated thread until the process exits.
    pub fn shared() -> Result<&'static ControlPlane, HarnessError> {
        SHARED
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel();
                let spawned = std::thread::Builder::new().name("control-plane".into()).spawn(move || {
                    let started = Instant::now();
                    match ControlPlane::start().and_then(|cp| cp.apply_crds().map(|()| cp)) {
                        Ok(cp) => {
                            eprintln!(
                                "[control-plane] ready at {} in {:.1}s (data in {})",
                                cp.url(),
                                started.elapsed().as_secs_f64(),
                                cp.dir().display()
                            );
                            let cp: &'static ControlPlane = Box::leak(Box::new(cp));
                            let _ = tx.send(Ok(cp));
                            // This thread owns the children (PR_SET_PDEATHSIG): it must outlive every test.
                            loop {
                                std::thread::park();
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
                match spawned {
                    Ok(_) => rx.recv().unwrap_or_else(|_| Err("control-plane thread died".to_string())),
                    Err(e) => Err(format!("spawn control-plane thread: {e}")),
                }
            })
            .clone()
            .map_err(HarnessError::Shared)
    }

    /// Start a private control plane (for tests that stop or restart the API server). Its children die with
    /// the calling thread or when it is dropped.
    pub fn start() -> Result<ControlPlane, HarnessError> {
        Self::start_with_audit(false)
    }

    /// Start a private control plane whose API server, when `audit` is set, writes an audit log with one
    /// line per request (user, verb, resource) to [`ControlPlane::audit_log`]: how the scale run counts
    /// requests by component.
    pub fn start_with_audit(audit: bool) -> Result<ControlPlane, HarnessError> {
        let bins = Binaries::locate()?;
        clean_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "gpuscope-cp-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        fs::create_dir_all(dir.join("certs")).map_err(io_err(format!("create {}", dir.display())))?;
        let cp = ControlPlane {
            dir,
            bins,
            etcd_port: free_port()?,
            etcd_peer_port: free_port()?,
            apiserver_port: free_port()?,
            procs: Mutex::new(Procs::default()),
            keep_dir: std::env::var_os("GPUSCOPE_KEEP_CONTROL_PLANE").is_some(),
            audit,
        };
        cp.write_credentials()?;
        cp.start_etcd()?;
        cp.start_apiserver()?;
        cp.start_controller_manager()?;
        Ok(cp)
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// etcd's client URL (its v3 JSON gateway serves `/v3/kv/*`, e.g. to change data behind the API server's back).
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// The API server's audit log (JSON lines), written only by a control plane started with audit on.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The admin kubeconfig (for `kubectl --kubeconfig`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig_for(Identity::Admin)
    }

    /// A kubeconfig that authenticates as `identity`.
    pub fn kubeconfig_for(&self, identity: Identity) -> PathBuf {
        self.dir.join(format!("kubeconfig-{}", identity.name()))
    }

    /// The folder holding data, logs and credentials.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kube client acting as admin. Create one per test: a client is bound to the runtime that made it.
    pub async fn client(&self) -> Result<kube::Client, HarnessError> {
        self.client_as(Identity::Admin).await
    }

    /// A kube client acting as `identity`.
    pub async fn client_as(&self, identity: Identity) -> Result<kube::Client, HarnessError> {
        client_from_kubeconfig(&self.kubeconfig_for(identity)).await
    }

    /// `kubectl` preconfigured with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(self.kubeconfig());
        cmd
    }

    /// The API server's process id (for resource measurements).
    pub fn apiserver_pid(&self) -> Option<u32> {
        self.lock().apiserver.as_ref().map(|p| p.pid())
    }

    /// etcd's process id (for resource measurements).
    pub fn etcd_pid(&self) -> Option<u32> {
        self.lock().etcd.as_ref().map(|p| p.pid())
    }

    /// Kill the API server (as a crash would). etcd keeps the data.
    pub fn stop_apiserver(&self) {
        if let Some(mut p) = self.lock().apiserver.take() {
            p.kill();
        }
    }

    /// Start the API server (again) on the same port and wait until it is ready.
    pub fn start_apiserver(&self) -> Result<(), HarnessError> {
        let d = &self.dir;
        let mut cmd = Command::new(&self.bins.apiserver);
        cmd.arg(format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.apiserver_port))
            .arg(format!("--tls-cert-file={}", d.join("certs/apiserver.crt").display()))
            .arg(format!("--tls-private-key-file={}", d.join("certs/apiserver.key").display()))
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!("--token-auth-file={}", d.join("tokens.csv").display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", d.join("sa.key").display()))
            .arg(format!("--service-account-signing-key-file={}", d.join("sa.key").display()))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--allow-privileged=true");
        if self.bins.minor < 24 {
            // Before 1.24 the insecure port exists and only 0 (off) is accepted; later servers removed the flag.
            cmd.arg("--insecure-port=0");
        }
        if self.audit {
            let policy = d.join("audit-policy.yaml");
            fs::write(&policy, AUDIT_POLICY).map_err(io_err(format!("write {}", policy.display())))?;
            cmd.arg(format!("--audit-policy-file={}", policy.display()))
                .arg(format!("--audit-log-path={}", self.audit_log().display()))
                .arg("--audit-log-format=json")
                .arg("--audit-log-mode=blocking")
                // In MB; 0 would mean its log library's default of 100 MB, which a large run passes in minutes.
                .arg("--audit-log-maxsize=100000");
        }
        let proc = Process::spawn("kube-apiserver", cmd, d.join("kube-apiserver.log"))?;
        self.lock().apiserver = Some(proc);
        self.wait_ready("kube-apiserver", Duration::from_secs(90), |cp| cp.apiserver_ready())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Procs> {
        self.procs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn start_etcd(&self) -> Result<(), HarnessError> {
        let mut cmd = Command::new(&self.bins.etcd);
        cmd.arg(format!("--data-dir={}", self.dir.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{}", self.etcd_port))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{}", self.etcd_port))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", self.etcd_peer_port))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", self.etcd_peer_port))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{}", self.etcd_peer_port))
            .arg("--unsafe-no-fsync")
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
        let proc = Process::spawn("etcd", cmd, self.dir.join("etcd.log"))?;
        self.lock().etcd = Some(proc);
        let port = self.etcd_port;
        self.wait_ready("etcd", Duration::from_secs(30), move |_| {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    fn start_controller_manager(&self) -> Result<(), HarnessError> {
        let Some(bin) = &self.bins.controller_manager else {
            eprintln!("[control-plane] no kube-controller-manager: garbage collection and service accounts are off");
            return Ok(());
        };
        let d = &self.dir;
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig().display()))
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg("--controllers=*,-nodelifecycle,-csrsigning,-bootstrapsigner,-tokencleaner")
            .arg(format!("--service-account-private-key-file={}", d.join("sa.key").display()))
            .arg(format!("--root-ca-file={}", d.join("certs/ca.crt").display()));
        if self.bins.minor < 24 {
            // Before 1.24 the controller-manager also serves an insecure port unless told not to.
            cmd.arg("--port=0");
        }
        let proc = Process::spawn("kube-controller-manager", cmd, d.join("kube-controller-manager.log"))?;
        self.lock().controller_manager = Some(proc);
        // Ready when it has created the `default` ServiceAccount in `default`: until then no pod can be created.
        self.wait_ready("kube-controller-manager", Duration::from_secs(60), |cp| {
            cp.kubectl_ok(&["get", "serviceaccount", "default", "-n", "default"])
        })
    }

    fn wait_ready(
        &self,
        component: &'static str,
        limit: Duration,
        ready: impl Fn(&ControlPlane) -> bool,
    ) -> Result<(), HarnessError> {
        let started = Instant::now();
        loop {
            {
                let mut guard = self.lock();
                let procs = &mut *guard;
                for p in [&mut procs.etcd, &mut procs.apiserver, &mut procs.controller_manager].into_iter().flatten() {
                    p.check_running()?;
                }
            }
            if ready(self) {
                return Ok(());
            }
            if started.elapsed() > limit {
                let log = self.dir.join(format!("{component}.log"));
                return Err(HarnessError::NotReady { component, waited: limit, tail: tail(&log, 30), log });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn apiserver_ready(&self) -> bool {
        self.kubectl_ok(&["get", "--raw", "/readyz"])
    }

    fn kubectl_ok(&self, args: &[&str]) -> bool {
        self.kubectl()
            .args(args)
            .arg("--request-timeout=5s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Apply every CRD in `config/crd/` with `kubectl apply --server-side` and wait until they are established.
    pub fn apply_crds(&self) -> Result<(), HarnessError> {
        let crd_dir = workspace_root().join("config/crd");
        let out = self
            .kubectl()
            .args(["apply", "--server-side", "--field-manager=gpuscope-tests", "-f"])
            .arg(&crd_dir)
            .output()
            .map_err(io_err("run kubectl apply"))?;
        if !out.status.success() {
            return Err(HarnessError::Client(format!(
                "kubectl apply -f {}: {}",
                crd_dir.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let out = self
            .kubectl()
            .args(["wait", "--for=condition=Established", "--timeout=60s", "-f"])
            .arg(&crd_dir)
            .output()
            .map_err(io_err("run kubectl wait"))?;
        if !out.status.success() {
            return Err(HarnessError::Client(format!(
                "CRDs not established: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    fn write_credentials(&self) -> Result<(), HarnessError> {
        let d = &self.dir;
        let certs = d.join("certs");
        openssl(&["genrsa", "-out", &path_str(&d.join("sa.key")), "2048"])?;
        openssl(&["genrsa", "-out", &path_str(&certs.join("ca.key")), "2048"])?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &path_str(&certs.join("ca.key")),
            "-subj",
            "/CN=gpuscope-test-ca",
            "-days",
            "30",
            "-out",
            &path_str(&certs.join("ca.crt")),
        ])?;
        openssl(&["genrsa", "-out", &path_str(&certs.join("apiserver.key")), "2048"])?;
        openssl(&[
            "req",
            "-new",
            "-key",
            &path_str(&certs.join("apiserver.key")),
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            &path_str(&certs.join("apiserver.csr")),
        ])?;
        let ext = certs.join("apiserver.ext");
        fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.96.0.1\n",
        )
        .map_err(io_err("write cert extensions"))?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path_str(&certs.join("apiserver.csr")),
            "-CA",
            &path_str(&certs.join("ca.crt")),
            "-CAkey",
            &path_str(&certs.join("ca.key")),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &path_str(&ext),
            "-out",
            &path_str(&certs.join("apiserver.crt")),
        ])?;

        let mut tokens = String::new();
        for id in Identity::ALL {
            let groups = if id == Identity::Admin { "system:masters" } else { "" };
            tokens.push_str(&format!("{},{},{},\"{}\"\n", id.token(), id.username(), id.name(), groups));
        }
        fs::write(d.join("tokens.csv"), tokens).map_err(io_err("write tokens.csv"))?;

        let ca = certs.join("ca.crt");
        for id in Identity::ALL {
            let kubeconfig = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: gpuscope-test\n  cluster:\n    server: {url}\n    \
                 certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\n\
                 contexts:\n- name: gpuscope-test\n  context:\n    cluster: gpuscope-test\n    user: {name}\n\
                 current-context: gpuscope-test\n",
                url = self.url(),
                ca = ca.display(),
                name = id.name(),
                token = id.token(),
            );
            let path = self.kubeconfig_for(id);
            let mut f = fs::File::create(&path).map_err(io_err(format!("write {}", path.display())))?;
            f.write_all(kubeconfig.as_bytes()).map_err(io_err(format!("write {}", path.display())))?;
        }
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut procs = self.lock();
        // Stop in reverse order of start so the API server does not log etcd errors on the way down.
        procs.controller_manager.take();
        procs.apiserver.take();
        procs.etcd.take();
        drop(procs);
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, HarnessError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| HarnessError::Client(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| HarnessError::Client(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| HarnessError::Client(e.to_string()))
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn openssl(args: &[&str]) -> Result<(), HarnessError> {
    let out = Command::new("openssl").args(args).output().map_err(io_err("run openssl (apt-get install openssl)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Openssl { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).into_owned() })
    }
}

/// Remove data folders of earlier test processes that are gone (the shared plane's folder is never dropped).
fn clean_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("gpuscope-cp-") else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_identities_are_their_service_accounts() {
        assert_eq!(Identity::Probe.username(), "system:serviceaccount:gpuscope-system:gpuscope-probe");
        assert_eq!(Identity::Admin.username(), "admin");
    }
}
