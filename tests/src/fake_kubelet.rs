//! A fake kubelet pod-resources server: the kubelet's v1 `PodResourcesLister` gRPC service on a unix socket (tonic,
//! the same wire format and message definitions the probe reads), whose allocations and behaviour a test sets.
//! It can answer slowly, answer garbage, refuse a call as unimplemented, or disappear.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpuscope_probe::pod_resources::proto::{
    ALLOCATABLE_PATH, AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices, ContainerResources,
    LIST_PATH, ListPodResourcesRequest, ListPodResourcesResponse, PodResources, SERVICE,
};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic_prost::ProstCodec;

/// How the fake kubelet answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers with the allocations set.
    #[default]
    Normal,
    /// Waits this long before answering.
    Slow(Duration),
    /// Answers `List` with bytes that are not a `ListPodResourcesResponse`.
    Garbage,
    /// Answers every call with gRPC UNIMPLEMENTED (a kubelet without the v1 API).
    Unimplemented,
}

#[derive(Debug, Default)]
struct Shared {
    pods: Vec<PodResources>,
    allocatable: Vec<ContainerDevices>,
    behaviour: Behaviour,
    list_calls: u64,
}

/// A running fake kubelet; stops (and removes its socket) when dropped.
#[derive(Debug)]
pub struct FakeKubelet {
    socket: PathBuf,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeKubelet {
    /// Serve on a new unix socket at `socket` (its directory must exist).
    pub async fn start(socket: &Path) -> Result<FakeKubelet, String> {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket).map_err(|e| format!("bind {}: {e}", socket.display()))?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = KubeletService(shared.clone());
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("[fake-kubelet] server ended: {e}");
            }
        });
        Ok(FakeKubelet { socket: socket.to_path_buf(), shared, stop: Some(stop) })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Replace the pods and their devices `List` reports.
    pub fn set_pods(&self, pods: Vec<PodResources>) {
        self.with(|s| s.pods = pods);
    }

    /// Replace the devices `GetAllocatableResources` reports.
    pub fn set_allocatable(&self, devices: Vec<ContainerDevices>) {
        self.with(|s| s.allocatable = devices);
    }

    /// Change how it answers.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.with(|s| s.behaviour = behaviour);
    }

    /// How many `List` calls it answered (or began to).
    pub fn list_calls(&self) -> u64 {
        self.with(|s| s.list_calls)
    }

    /// Remove the socket file (the kubelet went away; connections fail with "no such file").
    pub fn remove_socket(&self) -> std::io::Result<()> {
        std::fs::remove_file(&self.socket)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        f(&mut self.shared.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A pod holding whole-GPU devices (`nvidia.com/gpu`) by id, in one container.
pub fn gpu_pod(namespace: &str, name: &str, container: &str, device_ids: &[&str]) -> PodResources {
    device_pod(namespace, name, container, "nvidia.com/gpu", device_ids)
}

/// A pod holding devices of `resource` by id, in one container.
pub fn device_pod(namespace: &str, name: &str, container: &str, resource: &str, device_ids: &[&str]) -> PodResources {
    PodResources {
        name: name.into(),
        namespace: namespace.into(),
        containers: vec![ContainerResources {
            name: container.into(),
            devices: vec![ContainerDevices {
                resource_name: resource.into(),
                device_ids: device_ids.iter().map(|s| s.to_string()).collect(),
            }],
            dynamic_resources: vec![],
        }],
    }
}

/// A message whose field 1 is a varint: not decodable as a `ListPodResourcesResponse`, whose field 1 is a message.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(uint64, tag = "1")]
    junk: u64,
}

#[derive(Clone)]
struct KubeletService(Arc<Mutex<Shared>>);

impl NamedService for KubeletService {
    const NAME: &'static str = SERVICE;
}

impl KubeletService {
    /// The behaviour, counting a List call; sleeps first when slow.
    async fn behaviour(&self, list: bool) -> Behaviour {
        let behaviour = {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if list {
                s.list_calls += 1;
            }
            s.behaviour
        };
        if let Behaviour::Slow(d) = behaviour {
            tokio::time::sleep(d).await;
        }
        behaviour
    }
}

impl<B> Service<http::Request<B>> for KubeletService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let behaviour = this.behaviour(path == LIST_PATH).await;
            if behaviour == Behaviour::Unimplemented {
                return Ok(tonic::Status::unimplemented("unknown service v1.PodResourcesLister").into_http());
            }
            Ok(match path.as_str() {
                LIST_PATH if behaviour == Behaviour::Garbage => {
                    let mut grpc = Grpc::new(ProstCodec::<Garbage, ListPodResourcesRequest>::default());
                    grpc.unary(Answer(this, |_: &Shared| Garbage { junk: 7 }), req).await
                }
                LIST_PATH => {
                    let mut grpc =
                        Grpc::new(ProstCodec::<ListPodResourcesResponse, ListPodResourcesRequest>::default());
                    grpc.unary(
                        Answer(this, |s: &Shared| ListPodResourcesResponse { pod_resources: s.pods.clone() }),
                        req,
                    )
                    .await
                }
                ALLOCATABLE_PATH => {
                    let mut grpc =
                        Grpc::new(ProstCodec::<AllocatableResourcesResponse, AllocatableResourcesRequest>::default());
                    let answer =
                        Answer(this, |s: &Shared| AllocatableResourcesResponse { devices: s.allocatable.clone() });
                    grpc.unary(answer, req).await
                }
                _ => tonic::Status::unimplemented(format!("no method {path}")).into_http(),
            })
        })
    }
}

/// A unary method answering from the shared state.
struct Answer<F>(KubeletService, F);

impl<Req, Resp, F> UnaryService<Req> for Answer<F>
where
    F: Fn(&Shared) -> Resp,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<tonic::Response<Resp>, tonic::Status>;

    fn call(&mut self, _request: tonic::Request<Req>) -> Self::Future {
        let resp = (self.1)(&self.0.0.lock().unwrap_or_else(|p| p.into_inner()));
        Box::pin(async move { Ok(tonic::Response::new(resp)) })
    }
}
