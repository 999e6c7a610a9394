//! Which cluster a program talks to: `--kubeconfig` and `--context`, with kubectl's meaning, shared by the three
//! programs.
//!
//! - `--kubeconfig PATH`: that file alone (the `KUBECONFIG` variable is then ignored, as kubectl does).
//! - otherwise the files `KUBECONFIG` lists (merged), else `~/.kube/config`;
//! - `--context NAME`: that context of the kubeconfig instead of its current one;
//! - with neither flag and no kubeconfig found: the in-cluster service account.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// `--kubeconfig` and `--context`, for a program that talks to one cluster.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct KubeconfigArgs {
    /// Path of the kubeconfig file to use, as kubectl's --kubeconfig (default: $KUBECONFIG, else
    /// ~/.kube/config, else the in-cluster service account).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use, as kubectl's --context (default: the kubeconfig's current context).
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
}

impl KubeconfigArgs {
    /// A client for the cluster these flags name.
    pub async fn client(&self) -> Result<kube::Client, KubeConfigError> {
        let (config, _) = client_config(self.kubeconfig.as_deref(), self.context.as_deref()).await?;
        kube::Client::try_from(config).map_err(|e| KubeConfigError::Client(e.to_string()))
    }
}

/// Why no cluster configuration could be built. Each message names the file or context it tried.
#[derive(Debug, thiserror::Error)]
pub enum KubeConfigError {
    /// The file given with `--kubeconfig` could not be read or parsed.
    #[error("cannot read the kubeconfig {path}: {detail}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The kubeconfig has no such context, or the context cannot be used.
    #[error("kubeconfig {source_name}: cannot use context {context}: {detail}")]
    Context {
        /// The file, or `$KUBECONFIG / ~/.kube/config`.
        source_name: String,
        /// The context.
        context: String,
        /// What went wrong.
        detail: String,
    },
    /// The kubeconfig (or its current context) cannot be used.
    #[error("kubeconfig {source_name}: {detail}")]
    Kubeconfig {
        /// The file, or `$KUBECONFIG / ~/.kube/config`.
        source_name: String,
        /// What went wrong.
        detail: String,
    },
    /// Neither a kubeconfig nor an in-cluster service account.
    #[error(
        "no Kubernetes configuration: no kubeconfig ($KUBECONFIG or ~/.kube/config) and not in a cluster ({detail}); \
         pass --kubeconfig PATH"
    )]
    Infer {
        /// Both failures.
        detail: String,
    },
    /// The configuration could not become a client (e.g. bad TLS material).
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
}

/// The client configuration for `kubeconfig` and `context` (see the module doc), and the name of the context it
/// used (`None` in-cluster).
pub async fn client_config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(kube::Config, Option<String>), KubeConfigError> {
    let options = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
    let source_name = |path: Option<&Path>| {
        path.map_or_else(|| "$KUBECONFIG / ~/.kube/config".to_string(), |p| p.display().to_string())
    };
    let failed = |path: Option<&Path>, e: kube::config::KubeconfigError| match context {
        Some(c) => {
            KubeConfigError::Context { source_name: source_name(path), context: c.to_string(), detail: e.to_string() }
        }
        None => KubeConfigError::Kubeconfig { source_name: source_name(path), detail: e.to_string() },
    };
    match (kubeconfig, context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| KubeConfigError::Read { path: path.to_path_buf(), detail: e.to_string() })?;
            let used = context.map(str::to_string).or_else(|| file.current_context.clone());
            let config =
                kube::Config::from_custom_kubeconfig(file, &options).await.map_err(|e| failed(kubeconfig, e))?;
            Ok((config, used))
        }
        (None, Some(context)) => {
            let config = kube::Config::from_kubeconfig(&options).await.map_err(|e| failed(None, e))?;
            Ok((config, Some(context.to_string())))
        }
        (None, None) => {
            // What the programs did before these flags existed (`Client::try_default`): kubeconfig, else in-cluster.
            let config = kube::Config::infer().await.map_err(|e| KubeConfigError::Infer { detail: e.to_string() })?;
            let used = Kubeconfig::read().ok().and_then(|k| k.current_context);
            Ok((config, used))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CONTEXTS: &str = "
apiVersion: v1
kind: Config
current-context: alpha
clusters:
- name: a
  cluster: { server: 'https://127.0.0.1:6443' }
- name: b
  cluster: { server: 'https://127.0.0.2:7443' }
users:
- name: u
  user: { token: t0123456789 }
contexts:
- name: alpha
  context: { cluster: a, user: u }
- name: beta
  context: { cluster: b, user: u }
";

    fn kubeconfig_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config");
        std::fs::write(&path, TWO_CONTEXTS).expect("write");
        (dir, path)
    }

    #[tokio::test]
    async fn the_file_given_is_used_with_its_current_context_or_the_one_named() {
        let (_dir, path) = kubeconfig_file();
        let (config, used) = client_config(Some(&path), None).await.expect("current context");
        assert_eq!(
            (config.cluster_url.to_string().as_str(), used.as_deref()),
            ("https://127.0.0.1:6443/", Some("alpha"))
        );
        let (config, used) = client_config(Some(&path), Some("beta")).await.expect("named context");
        assert_eq!(
            (config.cluster_url.to_string().as_str(), used.as_deref()),
            ("https://127.0.0.2:7443/", Some("beta"))
        );
    }

    #[tokio::test]
    async fn errors_name_the_file_and_the_context() {
        let (_dir, path) = kubeconfig_file();
        let e = client_config(Some(&path), Some("gamma")).await.expect_err("no such context").to_string();
        assert!(e.contains(&path.display().to_string()) && e.contains("gamma"), "{e}");
        let missing = path.with_file_name("missing");
        let e = client_config(Some(&missing), None).await.expect_err("no such file").to_string();
        assert!(e.starts_with("cannot read the kubeconfig") && e.contains("missing"), "{e}");
    }

    #[test]
    fn flags_parse_as_kubectls() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            kube: KubeconfigArgs,
        }
        let cli = Cli::try_parse_from(["x", "--kubeconfig", "/tmp/k", "--context", "lab"]).expect("parses");
        assert_eq!(cli.kube.kubeconfig.as_deref(), Some(Path::new("/tmp/k")));
        assert_eq!(cli.kube.context.as_deref(), Some("lab"));
    }
}
