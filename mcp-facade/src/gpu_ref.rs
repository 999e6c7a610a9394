//! One GPU as an answer names it (index, UUID, PCI address), and how to find it in a node's facts.

use schemars::JsonSchema;
use serde::Serialize;

use crate::status_facts::{GpuFacts, StatusFacts};

/// One GPU, as precisely as the data names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
pub struct GpuRef {
    /// NVML index on its node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// GPU UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// PCI bus id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
}

impl GpuRef {
    /// "GPU 3" or the UUID when the index is not known.
    pub fn label(&self) -> String {
        match (&self.index, &self.uuid, &self.pci_bus_id) {
            (Some(i), _, _) => format!("GPU {i}"),
            (None, Some(u), _) => u.clone(),
            (None, None, Some(p)) => format!("GPU at {p}"),
            (None, None, None) => "unidentified GPU".to_string(),
        }
    }
}

/// The reference of one GPU.
pub fn gpu_ref(g: &GpuFacts) -> GpuRef {
    GpuRef { index: g.index, uuid: Some(g.uuid.to_string()), pci_bus_id: g.pci_bus_id.as_deref().map(str::to_string) }
}

/// Resolve a GPU reference from an XID record (PCI bus id, maybe UUID) against the node's inventory.
pub fn gpu_at(facts: &StatusFacts, pci_bus_id: &str, uuid: Option<&str>) -> GpuRef {
    let found = facts.inventory().find(|g| {
        g.pci_bus_id.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(pci_bus_id)) || Some(&*g.uuid) == uuid
    });
    GpuRef {
        index: found.and_then(|g| g.index),
        uuid: found.map(|g| g.uuid.to_string()).or_else(|| uuid.map(str::to_string)),
        pci_bus_id: Some(pci_bus_id.to_string()),
    }
}
