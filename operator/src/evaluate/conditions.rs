//! The five conditions, their lastTransitionTime, and the transitions worth an Event.
//!
//! Polarity follows Kubernetes' habit: `GPUHealthy` and `ProbeReporting` are True when all is well; `XIDErrors`,
//! `MemoryErrors` and `Thermal` are True when there is a problem (like a Node's MemoryPressure). Messages never
//! carry values that change on every report (a Lease renew time, a live temperature when it is fine), so an
//! unchanged node gives an identical status and the reconciler writes nothing.

use std::collections::BTreeMap;

use gpuscope_crds::gpu_node_status::GpuInfo;
use gpuscope_crds::health::{Health, condition_type, reason};
use gpuscope_crds::policy::{EffectivePolicy, format_duration};
use gpuscope_crds::xid::rules::reason_urgency;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{Category, Finding, GpuState, ProbeLease, Transition, fmt_time, plus, rank};

const TRUE: &str = "True";
const FALSE: &str = "False";
const UNKNOWN: &str = "Unknown";
/// Most items a condition message lists before "… and N more".
const MAX_ITEMS: usize = 8;

/// What the probe's Lease says.
pub(super) struct Heartbeat {
    status: &'static str,
    reason: &'static str,
    message: String,
    /// Renewed within the timeout: the probe's data is current.
    pub fresh: bool,
    /// When a fresh heartbeat times out.
    pub expires_at: Option<Timestamp>,
}

/// ProbeReporting: True while the Lease is younger than the timeout.
pub(super) fn heartbeat(lease: ProbeLease, policy: &EffectivePolicy, now: Timestamp) -> Heartbeat {
    let timeout = format_duration(policy.heartbeat_timeout);
    let stale = |reason, message| Heartbeat { status: UNKNOWN, reason, message, fresh: false, expires_at: None };
    match lease {
        ProbeLease::Absent => stale(
            reason::PROBE_MISSING,
            "No probe Lease for this node: the gpuscope node-probe is not running there or cannot reach the API \
             server."
                .to_string(),
        ),
        ProbeLease::NeverRenewed => stale(
            reason::PROBE_STALE,
            format!(
                "The node probe's Lease has never been renewed (timeout {timeout}). Check the gpuscope node-probe pod \
                 on this node."
            ),
        ),
        ProbeLease::RenewedAt(renewed) => {
            let deadline = plus(renewed, policy.heartbeat_timeout);
            if now < deadline {
                Heartbeat {
                    status: TRUE,
                    reason: reason::PROBE_HEARTBEAT,
                    message: format!("The node probe renews its Lease within the {timeout} timeout."),
                    fresh: true,
                    expires_at: Some(deadline),
                }
            } else {
                stale(
                    reason::PROBE_STALE,
                    format!(
                        "The node probe has not renewed its Lease since {} (timeout {timeout}); verdicts keep its \
                         last report. Check the gpuscope node-probe pod on this node.",
                        fmt_time(renewed)
                    ),
                )
            }
        }
    }
}

/// What the conditions are computed from.
pub(super) struct Summary<'s> {
    pub gpus: &'s [GpuState<'s>],
    pub health: Health,
    pub inventory: Option<&'s [GpuInfo]>,
    pub has_xid_history: bool,
    pub recent_xid_count: u64,
    /// (GPU key, text) for XIDs within the window that escalate nothing.
    pub below_threshold: &'s [(String, String)],
    pub policy: &'s EffectivePolicy,
    pub heartbeat: &'s Heartbeat,
    /// The probe cannot load NVML: its error, when it gave one.
    pub nvml_unavailable: Option<&'s str>,
    /// The probe cannot read the kernel log: its error, when it gave one.
    pub kernel_log_unavailable: Option<&'s str>,
}

/// The conditions, the Node's copy of GPUHealthy and the transitions.
pub(super) struct Built {
    pub conditions: Vec<Condition>,
    pub node_condition: Condition,
    pub transitions: Vec<Transition>,
}

/// Builds the five conditions in [`condition_type::ALL`] order.
pub(super) fn build(s: &Summary, previous: &[Condition], generation: Option<i64>, now: Timestamp) -> Built {
    // Kubernetes stores whole seconds; a sub-second time would differ from what is read back.
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let raw = [
        (condition_type::GPU_HEALTHY, gpu_healthy(s)),
        (condition_type::XID_ERRORS, xid_errors(s)),
        (condition_type::MEMORY_ERRORS, category(s, Category::Memory, reason::NO_MEMORY_ERRORS, memory_ok(s))),
        (condition_type::THERMAL, category(s, Category::Thermal, reason::TEMPERATURE_NORMAL, thermal_ok(s))),
        (
            condition_type::PROBE_REPORTING,
            (s.heartbeat.status, s.heartbeat.reason.to_string(), s.heartbeat.message.clone()),
        ),
    ];
    let mut conditions = Vec::new();
    let mut transitions = Vec::new();
    for (type_, (status, reason, message)) in raw {
        let before = previous.iter().find(|c| c.type_ == type_);
        let last_transition_time = match before {
            Some(b) if b.status == status => b.last_transition_time.clone(),
            _ => Time(now),
        };
        let changed = before.is_none_or(|b| b.status != status || b.reason != reason);
        let problem = is_problem(type_, status, &reason);
        // A GPU that vanished takes its readings with it: that is no recovery worth a "back to normal" Event.
        let vanished_recovery = !problem
            && before.is_some_and(|b| is_problem(type_, &b.status, &b.reason))
            && matches!(type_, condition_type::MEMORY_ERRORS | condition_type::THERMAL)
            && s.gpus.iter().any(|g| g.info.is_none() && g.findings.iter().any(|f| f.reason == reason::GPU_MISSING));
        if changed && (before.is_some() || problem) && !vanished_recovery {
            transitions.push(Transition {
                condition_type: type_.to_string(),
                from_status: before.map(|b| b.status.clone()),
                from_reason: before.map(|b| b.reason.clone()),
                to_status: status.to_string(),
                reason: reason.clone(),
                message: message.clone(),
                warning: problem,
            });
        }
        conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason,
            message,
            last_transition_time,
            observed_generation: generation,
        });
    }
    let node_condition = conditions.first().cloned().unwrap_or_else(|| Condition {
        type_: condition_type::GPU_HEALTHY.to_string(),
        status: UNKNOWN.to_string(),
        reason: reason::NO_DATA.to_string(),
        message: String::new(),
        last_transition_time: Time(now),
        observed_generation: generation,
    });
    Built { conditions, node_condition, transitions }
}

/// Whether a state is worth a Warning (and an Event even when the condition is new).
fn is_problem(type_: &str, status: &str, reason: &str) -> bool {
    match type_ {
        condition_type::GPU_HEALTHY => status != TRUE || reason != reason::HEALTHY,
        condition_type::PROBE_REPORTING => status != TRUE,
        // A blind spot is a problem to fix on the node, whatever the condition's polarity.
        _ => status == TRUE || reason == reason::KERNEL_LOG_UNAVAILABLE || reason == reason::NVML_UNAVAILABLE,
    }
}

/// The probe's error in parentheses, cut to a readable length; nothing when it gave none.
fn because(error: Option<&str>) -> String {
    match error.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) if e.chars().count() > 100 => format!(" ({}…)", e.chars().take(100).collect::<String>()),
        Some(e) => format!(" ({e})"),
        None => String::new(),
    }
}

/// GPUHealthy, MemoryErrors and Thermal when the probe cannot load NVML.
fn nvml_unavailable(error: Option<&str>) -> Raw {
    (
        UNKNOWN,
        reason::NVML_UNAVAILABLE.to_string(),
        format!(
            "The probe cannot load NVML{}: no GPU data. Check the NVIDIA driver and container runtime on the node.",
            because(error)
        ),
    )
}

type Raw = (&'static str, String, String);

fn gpu_healthy(s: &Summary) -> Raw {
    // Evidence from the kernel log can still make a GPU Degraded or Unhealthy; short of that, nothing is known.
    if s.nvml_unavailable.is_some() && matches!(s.health, Health::Unknown | Health::Healthy) {
        return nvml_unavailable(s.nvml_unavailable);
    }
    if s.gpus.is_empty() {
        let message = match s.inventory {
            None => "The probe has not reported any GPU for this node yet; check the gpuscope node-probe pod on it.",
            Some(_) => "NVML reports no GPU on this node; check the NVIDIA driver there (nvidia-smi).",
        };
        return (UNKNOWN, reason::NO_DATA.to_string(), message.to_string());
    }
    let n = s.gpus.len();
    let with = |h: Health| s.gpus.iter().filter(move |g| g.health() == h);
    let describe = |g: &GpuState| format!("{}: {}", g.describe(), g.findings_message().unwrap_or_default());
    let first_reason =
        |h: Health| with(h).flat_map(|g| g.findings.first()).map(|f| f.reason.clone()).next().unwrap_or_default();
    let (unhealthy, degraded, unknown) =
        (with(Health::Unhealthy).count(), with(Health::Degraded).count(), with(Health::Unknown).count());
    let (status, reason, mut message) = match s.health {
        Health::Unhealthy => {
            let reboot =
                s.gpus.iter().flat_map(|g| &g.findings).any(|f| f.node_reboot && f.health == Health::Unhealthy);
            // The most specific reason wins: a GPU off the bus or missing says more than "the driver asks for a
            // reboot"; otherwise the most urgent reason (the one ranking), first GPU first.
            let unhealthy_reasons =
                || with(Health::Unhealthy).flat_map(|g| &g.findings).filter(|f| f.health == Health::Unhealthy);
            let specific = [reason::XID_FALLEN_OFF_BUS, reason::GPU_MISSING]
                .into_iter()
                .find(|r| unhealthy_reasons().any(|f| f.reason == *r));
            let most_urgent = unhealthy_reasons()
                .map(|f| (reason_urgency(&f.reason), f.reason.clone()))
                .reduce(|best, next| if next.0 > best.0 { next } else { best })
                .map(|(_, r)| r);
            let reason = match (specific, reboot) {
                (Some(r), _) => r.to_string(),
                (None, true) => reason::RECOVERY_ACTION_REQUIRED.to_string(),
                (None, false) => most_urgent.unwrap_or_else(|| first_reason(Health::Unhealthy)),
            };
            let mut head = format!("{unhealthy} of {n} GPUs Unhealthy");
            if degraded > 0 {
                head.push_str(&format!(", {degraded} Degraded"));
            }
            if reboot {
                head.push_str("; the driver asks for a node reboot");
            }
            let items = with(Health::Unhealthy).chain(with(Health::Degraded)).map(describe).collect();
            (FALSE, reason, format!("{head}. {}", list(items)))
        }
        Health::Degraded => {
            let items = with(Health::Degraded).map(describe).collect();
            (TRUE, first_reason(Health::Degraded), format!("{degraded} of {n} GPUs Degraded. {}", list(items)))
        }
        Health::Unknown => {
            let items = with(Health::Unknown).map(describe).collect();
            (
                UNKNOWN,
                reason::NO_DATA.to_string(),
                format!("{unknown} of {n} GPUs have no current data. {}", list(items)),
            )
        }
        Health::Healthy => {
            let mut message =
                if n == 1 { "The GPU is healthy.".to_string() } else { format!("All {n} GPUs are healthy.") };
            // Clears by the policy's window rather than by evidence of a reset are said, once per GPU.
            let by_time: Vec<String> = s
                .gpus
                .iter()
                .filter(|g| g.findings.iter().any(|f| f.health == Health::Healthy && f.category == Category::Xid))
                .map(|g| g.index.map_or_else(|| g.key.clone(), |i| format!("GPU {i}")))
                .collect();
            if !by_time.is_empty() {
                message.push_str(&format!(
                    " Cleared by the policy's window, not by a reset: {} (see status.verdicts).",
                    by_time.join(", ")
                ));
            }
            (TRUE, reason::HEALTHY.to_string(), message)
        }
    };
    if !s.heartbeat.fresh {
        message.push_str(
            " These verdicts are from the probe's last report; it is not reporting now (see ProbeReporting).",
        );
    }
    (status, reason, message)
}

/// Findings of one category that are a problem, worst first, then in GPU order.
fn problems<'s>(s: &'s Summary, wanted: &[Category]) -> Vec<(&'s GpuState<'s>, &'s Finding)> {
    let mut out: Vec<(&GpuState, &Finding)> = s
        .gpus
        .iter()
        .flat_map(|g| g.findings.iter().map(move |f| (g, f)))
        .filter(|(_, f)| {
            let counted = wanted.contains(&f.category) || (f.memory_xid && wanted.contains(&Category::Memory));
            counted && rank(f.health) >= rank(Health::Degraded)
        })
        .collect();
    out.sort_by_key(|(_, f)| std::cmp::Reverse(rank(f.health)));
    out
}

fn xid_errors(s: &Summary) -> Raw {
    let window = format_duration(s.policy.xid_window);
    if s.gpus.is_empty() && !s.has_xid_history && s.inventory.is_none() {
        return (UNKNOWN, reason::NO_DATA.to_string(), "No XID data: the probe has not reported yet.".to_string());
    }
    let active = problems(s, &[Category::Recovery, Category::Xid]);
    if let Some((_, first)) = active.first() {
        let items = active.iter().map(|(g, f)| format!("{}: {}", g.describe(), f.message)).collect();
        let mut message = list(items);
        if s.kernel_log_unavailable.is_some() {
            message.push_str(" The kernel log is unreadable: only XIDs from NVML events are seen.");
        }
        return (TRUE, first.reason.clone(), message);
    }
    if s.kernel_log_unavailable.is_some() {
        let seen = if s.nvml_unavailable.is_some() {
            "NVML is unavailable too, so no XID can be seen".to_string()
        } else {
            format!(
                "only XIDs from NVML events are seen ({} within {window}, none above the policy's thresholds)",
                s.recent_xid_count
            )
        };
        let message = format!(
            "The probe cannot read the kernel log{}: {seen}. Give the probe access to /dev/kmsg.",
            because(s.kernel_log_unavailable)
        );
        return (UNKNOWN, reason::KERNEL_LOG_UNAVAILABLE.to_string(), message);
    }
    if s.recent_xid_count > 0 {
        // In GPU order (the verdicts' order), then by code as collected.
        let position: BTreeMap<&str, (usize, String)> =
            s.gpus.iter().enumerate().map(|(i, g)| (g.key.as_str(), (i, g.describe()))).collect();
        let mut rows: Vec<(usize, String)> = s
            .below_threshold
            .iter()
            .map(|(key, text)| match position.get(key.as_str()) {
                Some((i, name)) => (*i, format!("{name}: {text}")),
                None => (usize::MAX, format!("{key}: {text}")),
            })
            .collect();
        rows.sort_by_key(|(i, _)| *i);
        let items = rows.into_iter().map(|(_, item)| item).collect();
        let message = format!(
            "{} within {window} in this boot, none above the policy's thresholds. {}",
            plural(s.recent_xid_count, "XID", "XIDs"),
            list(items)
        );
        return (FALSE, reason::XIDS_BELOW_THRESHOLD.to_string(), message);
    }
    (FALSE, reason::NO_RECENT_XIDS.to_string(), format!("No XID within {window} in this boot."))
}

fn category(s: &Summary, cat: Category, ok_reason: &str, ok_message: String) -> Raw {
    if s.nvml_unavailable.is_some() && s.inventory.is_none() {
        return nvml_unavailable(s.nvml_unavailable);
    }
    if s.inventory.is_none_or(|i| i.is_empty()) {
        return (UNKNOWN, reason::NO_DATA.to_string(), "The probe reports no GPU telemetry for this node.".to_string());
    }
    let active = problems(s, &[cat]);
    match active.first() {
        Some((_, first)) => {
            let items = active.iter().map(|(g, f)| format!("{}: {}", g.describe(), f.message)).collect();
            (TRUE, first.reason.clone(), list(items))
        }
        None => (FALSE, ok_reason.to_string(), ok_message),
    }
}

fn memory_ok(_: &Summary) -> String {
    "No ECC, retired-page or row-remap finding above the policy's thresholds.".to_string()
}

fn thermal_ok(s: &Summary) -> String {
    format!(
        "No GPU at or above {} °C and no thermal throttling the policy counts.",
        s.policy.temperature_warning_celsius
    )
}

/// Items joined with spaces (each is whole sentences), at most [`MAX_ITEMS`], so the message stays bounded.
fn list(items: Vec<String>) -> String {
    let more = items.len().saturating_sub(MAX_ITEMS);
    let mut out: Vec<String> = items.into_iter().take(MAX_ITEMS).collect();
    if more > 0 {
        out.push(format!("… and {more} more (see status.verdicts)."));
    }
    out.join(" ")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}
