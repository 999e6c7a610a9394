//! A client for the kubelet's pod-resources gRPC service on its unix socket (tonic over a tokio `UnixStream`).
//! Every call is bounded by a timeout, and every failure is a [`PodResourcesError`] that says what to fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use super::proto::{
    ALLOCATABLE_PATH, AllocatableResourcesRequest, AllocatableResourcesResponse, LIST_PATH, ListPodResourcesRequest,
    ListPodResourcesResponse,
};

/// The kubelet's default pod-resources socket.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// Why the kubelet's pod-resources API could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    /// No socket at the path.
    #[error(
        "no kubelet pod-resources socket at {0}: mount the host's /var/lib/kubelet/pod-resources into the probe \
         (read-only hostPath) or point --pod-resources-socket at it"
    )]
    SocketMissing(PathBuf),
    /// The socket exists but may not be opened.
    #[error(
        "permission denied opening {0}: the kubelet's socket is root-only; run the probe as root (the DaemonSet \
         does) or give its user access"
    )]
    PermissionDenied(PathBuf),
    /// Nothing listens on the socket (a kubelet that is restarting, a stale socket file).
    #[error("cannot connect to the kubelet at {path}: {source} (is the kubelet running?)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The kubelet does not serve the call.
    #[error("the kubelet at {path} does not serve {call} (gRPC UNIMPLEMENTED): pod-resources v1 needs kubelet ≥ 1.20")]
    Unimplemented {
        /// Socket path.
        path: PathBuf,
        /// The gRPC method.
        call: &'static str,
    },
    /// No answer in time.
    #[error("the kubelet at {path} did not answer {call} within {timeout:?}; will retry")]
    Timeout {
        /// Socket path.
        path: PathBuf,
        /// The gRPC method.
        call: &'static str,
        /// The timeout.
        timeout: Duration,
    },
    /// The answer was not a pod-resources v1 message.
    #[error(
        "the kubelet's answer to {call} is not a pod-resources v1 message ({message}); is {path} the kubelet's socket?"
    )]
    Malformed {
        /// Socket path.
        path: PathBuf,
        /// The gRPC method.
        call: &'static str,
        /// What the decoder said.
        message: String,
    },
    /// Any other gRPC or transport failure.
    #[error("{call} on {path} failed: {message}")]
    Rpc {
        /// Socket path.
        path: PathBuf,
        /// The gRPC method.
        call: &'static str,
        /// The status or transport error.
        message: String,
    },
}

impl PodResourcesError {
    /// A short label for the error counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PodResourcesError::SocketMissing(_) => "socket_missing",
            PodResourcesError::PermissionDenied(_) => "permission_denied",
            PodResourcesError::Connect { .. } => "connect",
            PodResourcesError::Unimplemented { .. } => "unimplemented",
            PodResourcesError::Timeout { .. } => "timeout",
            PodResourcesError::Malformed { .. } => "malformed",
            PodResourcesError::Rpc { .. } => "rpc",
        }
    }
}

/// Reads the kubelet's pod-resources API. Connects afresh for each poll: a unix-socket connect costs nothing, and a
/// restarted kubelet (new socket file) is picked up without reconnection logic.
#[derive(Clone, Debug)]
pub struct KubeletClient {
    socket: PathBuf,
    timeout: Duration,
}

impl KubeletClient {
    /// A client for the socket at `socket`, with `timeout` per call (connect included).
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> KubeletClient {
        KubeletClient { socket: socket.into(), timeout }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `List`: every pod's devices and DRA claims.
    pub async fn list(&self) -> Result<ListPodResourcesResponse, PodResourcesError> {
        let channel = self.connect().await?;
        self.unary::<ListPodResourcesRequest, ListPodResourcesResponse>(channel, LIST_PATH, "List").await
    }

    /// `GetAllocatableResources`; `Ok(None)` when the kubelet does not serve it (older kubelets, feature off).
    pub async fn allocatable(&self) -> Result<Option<AllocatableResourcesResponse>, PodResourcesError> {
        let channel = self.connect().await?;
        match self
            .unary::<AllocatableResourcesRequest, AllocatableResourcesResponse>(
                channel,
                ALLOCATABLE_PATH,
                "GetAllocatableResources",
            )
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(PodResourcesError::Unimplemented { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn connect(&self) -> Result<Channel, PodResourcesError> {
        // Connect once by hand first: tonic's transport error hides the io::ErrorKind that tells a missing socket
        // from a permission problem, and those need different fixes.
        match tokio::time::timeout(self.timeout, tokio::net::UnixStream::connect(&self.socket)).await {
            Err(_) => return Err(self.timeout_error("connect")),
            Ok(Err(e)) => return Err(self.io_error(e)),
            Ok(Ok(_probe)) => {}
        }
        let uri = format!("unix://{}", self.socket.display());
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| self.rpc_error("connect", e.to_string()))?
            .connect_timeout(self.timeout);
        match tokio::time::timeout(self.timeout, endpoint.connect()).await {
            Err(_) => Err(self.timeout_error("connect")),
            Ok(Err(e)) => Err(self.rpc_error("connect", format!("{e}: {}", source_chain(&e)))),
            Ok(Ok(channel)) => Ok(channel),
        }
    }

    async fn unary<Req, Resp>(
        &self,
        channel: Channel,
        path: &'static str,
        call: &'static str,
    ) -> Result<Resp, PodResourcesError>
    where
        Req: prost::Message + Default + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(channel);
        let request = async {
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let codec = ProstCodec::<Req, Resp>::default();
            grpc.unary(tonic::Request::new(Req::default()), PathAndQuery::from_static(path), codec).await
        };
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(self.timeout_error(call)),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.status_error(call, status)),
        }
    }

    fn status_error(&self, call: &'static str, status: tonic::Status) -> PodResourcesError {
        let path = self.socket.clone();
        match status.code() {
            Code::Unimplemented => PodResourcesError::Unimplemented { path, call },
            Code::DeadlineExceeded => PodResourcesError::Timeout { path, call, timeout: self.timeout },
            Code::Cancelled if status.message().to_ascii_lowercase().contains("timeout") => {
                PodResourcesError::Timeout { path, call, timeout: self.timeout }
            }
            Code::Internal | Code::Unknown if looks_undecodable(status.message()) => {
                PodResourcesError::Malformed { path, call, message: status.message().to_string() }
            }
            _ => PodResourcesError::Rpc { path, call, message: format!("{}: {}", status.code(), status.message()) },
        }
    }

    fn io_error(&self, e: std::io::Error) -> PodResourcesError {
        match e.kind() {
            std::io::ErrorKind::NotFound => PodResourcesError::SocketMissing(self.socket.clone()),
            std::io::ErrorKind::PermissionDenied => PodResourcesError::PermissionDenied(self.socket.clone()),
            _ => PodResourcesError::Connect { path: self.socket.clone(), source: e },
        }
    }

    fn timeout_error(&self, call: &'static str) -> PodResourcesError {
        PodResourcesError::Timeout { path: self.socket.clone(), call, timeout: self.timeout }
    }

    fn rpc_error(&self, call: &'static str, message: String) -> PodResourcesError {
        PodResourcesError::Rpc { path: self.socket.clone(), call, message }
    }
}

/// tonic reports a body that is not the expected protobuf as an internal error naming the decoder.
fn looks_undecodable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("decode") || m.contains("protobuf") || m.contains("invalid") || m.contains("content-type")
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}
