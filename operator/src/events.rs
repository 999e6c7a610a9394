//! Events (events.k8s.io/v1) about GpuNodeStatus objects and Nodes, deduplicated: a repeat within
//! [`SERIES_WINDOW`] bumps the first Event's series count instead of creating another.
//!
//! Both objects are cluster-scoped. Servers from 1.22 accept their Events in `default`; older ones (1.20, 1.21)
//! accept them only in `kube-system`. The publisher writes to `default` and, when the server refuses that
//! with "does not match event.namespace", switches to `kube-system` for the rest of its life.
//! (kube-runtime's `Recorder` always writes to `default`, which is why this exists.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use tokio::sync::Mutex;

/// Repeats within this window are one Event with a growing series count.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
const PRIMARY_NAMESPACE: &str = "default";
const FALLBACK_NAMESPACE: &str = "kube-system";

/// What to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Warning (a problem) or Normal (a recovery).
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable note (at most 1 KiB is kept).
    pub note: String,
    /// What the operator did, e.g. `EvaluateGPUHealthy`.
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    uid: String,
    kind: String,
    reason: String,
    note: String,
    warning: bool,
}

/// Publishes Events; cheap to share behind an `Arc`.
pub struct Publisher {
    client: kube::Client,
    controller: String,
    instance: String,
    fallback: AtomicBool,
    recent: Mutex<HashMap<Key, (String, String, Event)>>,
}

impl Publisher {
    /// A publisher reporting as `controller` (e.g. gpuscope-operator) / `instance` (the pod).
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Publisher {
        Publisher {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            fallback: AtomicBool::new(false),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Publish `notice` about `regarding`.
    pub async fn publish(&self, notice: &Notice, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let key = Key {
            uid: regarding.uid.clone().unwrap_or_default(),
            kind: regarding.kind.clone().unwrap_or_default(),
            reason: notice.reason.clone(),
            note: notice.note.clone(),
            warning: notice.warning,
        };
        let mut recent = self.recent.lock().await;
        let window = jiff::SignedDuration::try_from(SERIES_WINDOW).unwrap_or(jiff::SignedDuration::ZERO);
        recent.retain(|_, (_, _, e)| {
            let last = e.series.as_ref().map(|s| s.last_observed_time.0).or(e.event_time.as_ref().map(|t| t.0));
            last.is_some_and(|t| t + window > now)
        });
        if let Some((namespace, name, event)) = recent.get_mut(&key) {
            let count = event.series.as_ref().map_or(2, |s| s.count + 1);
            event.series = Some(EventSeries { count, last_observed_time: MicroTime(now) });
            let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
            let patch = serde_json::json!({ "series": event.series });
            api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            return Ok(());
        }
        let event = self.event(notice, regarding, now);
        let (namespace, created) = self.create(event).await?;
        let name = created.metadata.name.clone().unwrap_or_default();
        recent.insert(key, (namespace, name, created));
        Ok(())
    }

    async fn create(&self, mut event: Event) -> Result<(String, Event), kube::Error> {
        let namespace = if self.fallback.load(Ordering::Relaxed) { FALLBACK_NAMESPACE } else { PRIMARY_NAMESPACE };
        event.metadata.namespace = Some(namespace.to_string());
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(e) => Ok((namespace.to_string(), e)),
            Err(kube::Error::Api(s))
                if namespace == PRIMARY_NAMESPACE
                    && s.code == 422
                    && s.message.contains("does not match event.namespace") =>
            {
                tracing::info!(
                    "this API server keeps Events of cluster-scoped objects in kube-system; writing them there"
                );
                self.fallback.store(true, Ordering::Relaxed);
                event.metadata.namespace = Some(FALLBACK_NAMESPACE.to_string());
                let api: Api<Event> = Api::namespaced(self.client.clone(), FALLBACK_NAMESPACE);
                api.create(&PostParams::default(), &event).await.map(|e| (FALLBACK_NAMESPACE.to_string(), e))
            }
            Err(e) => Err(e),
        }
    }

    fn event(&self, notice: &Notice, regarding: &ObjectReference, now: jiff::Timestamp) -> Event {
        let base = regarding.name.clone().unwrap_or_else(|| "object".into());
        Event {
            metadata: ObjectMeta {
                // Unique per creation: the name has no meaning beyond that (the same scheme as client-go).
                name: Some(format!("{base}.{:x}", now.as_nanosecond())),
                ..Default::default()
            },
            action: Some(notice.action.clone()),
            event_time: Some(MicroTime(now)),
            note: Some(notice.note.chars().take(1024).collect()),
            reason: Some(notice.reason.clone()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if notice.warning { "Warning" } else { "Normal" }.to_string()),
            ..Default::default()
        }
    }
}
