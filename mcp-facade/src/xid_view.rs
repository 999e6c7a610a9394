//! The XID catalog as answers carry it: what a code means, how bad it is and what to do, from
//! `gpuscope_crds::xid::lookup` so facade, operator and probe never disagree.

use gpuscope_crds::xid::{self, Severity};
use schemars::JsonSchema;
use serde::Serialize;

/// What an XID code means, from NVIDIA's catalog.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct XidMeaning {
    /// XID code.
    pub code: u32,
    /// NVIDIA's mnemonic, e.g. GPU_HAS_FALLEN_OFF_THE_BUS.
    pub mnemonic: String,
    /// NVIDIA's short description (left out where an answer lists many codes and explains only the first few).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Where the fault most likely sits: application, driver/firmware, GPU memory, PCIe bus, NVLink/fabric,
    /// informational.
    pub class: String,
    /// info, warning or critical.
    pub severity: String,
    /// NVIDIA's immediate action bucket, e.g. RESET_GPU.
    pub immediate_action: String,
    /// What an SRE should do (left out like `description`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub recommended_action: String,
    /// Present (false) when the catalog does not list the code.
    #[serde(skip_serializing_if = "is_true")]
    pub known: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The catalog's entry for `code` (a placeholder for codes it does not list).
pub fn meaning(code: u32) -> XidMeaning {
    let info = xid::lookup(code);
    XidMeaning {
        code,
        mnemonic: info.mnemonic.to_string(),
        description: info.description.to_string(),
        class: info.class.label().to_string(),
        severity: info.severity.as_str().to_string(),
        immediate_action: info.immediate_action.as_str().to_string(),
        recommended_action: info.recommended_action.to_string(),
        known: info.known,
    }
}

/// The catalog severity of `code`.
pub fn severity(code: u32) -> Severity {
    xid::lookup(code).severity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meaning_comes_from_the_shared_catalog() {
        let m = meaning(79);
        assert_eq!(m.mnemonic, xid::lookup(79).mnemonic);
        assert_eq!(m.severity, "critical");
        assert_eq!(m.class, "PCIe bus");
        assert_eq!(m.immediate_action, "RESTART_BM");
        assert!(m.known);
        assert!(!meaning(9_999).known);
        assert_eq!(severity(13), Severity::Warning);
    }
}
