//! The driver's own verdict on a GPU: its "recovery action", printed by XID 154
//! (`GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)`) and readable through NVML
//! field 230 (`NVML_FI_DEV_GET_GPU_RECOVERY_ACTION`).

use std::fmt;

/// The recovery action the driver asks for, as NVML's `nvmlDeviceGpuRecoveryAction_t` numbers it.
///
/// Parse the number, never the words: drivers print different words for the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecoveryAction {
    /// 0: nothing to do.
    None,
    /// 1: reset the GPU.
    GpuReset,
    /// 2: reboot the node.
    NodeReboot,
    /// 3: drain peer-to-peer traffic.
    DrainP2p,
    /// 4: drain the GPU, then reset it.
    DrainAndReset,
    /// 5: recover the IMEX domain (newer drivers).
    RecoverImexDomain,
    /// 6: reset the PCIe bus (newer drivers).
    BusReset,
    /// 7: reboot the whole system (newer drivers).
    SystemReboot,
    /// A value this build does not know.
    Other(u32),
}

impl RecoveryAction {
    /// The action for NVML's numeric value.
    pub const fn from_code(code: u32) -> RecoveryAction {
        match code {
            0 => RecoveryAction::None,
            1 => RecoveryAction::GpuReset,
            2 => RecoveryAction::NodeReboot,
            3 => RecoveryAction::DrainP2p,
            4 => RecoveryAction::DrainAndReset,
            5 => RecoveryAction::RecoverImexDomain,
            6 => RecoveryAction::BusReset,
            7 => RecoveryAction::SystemReboot,
            other => RecoveryAction::Other(other),
        }
    }

    /// NVML's numeric value.
    pub const fn code(self) -> u32 {
        match self {
            RecoveryAction::None => 0,
            RecoveryAction::GpuReset => 1,
            RecoveryAction::NodeReboot => 2,
            RecoveryAction::DrainP2p => 3,
            RecoveryAction::DrainAndReset => 4,
            RecoveryAction::RecoverImexDomain => 5,
            RecoveryAction::BusReset => 6,
            RecoveryAction::SystemReboot => 7,
            RecoveryAction::Other(code) => code,
        }
    }

    /// The CamelCase name used in the API (`None`, `GpuReset`, `NodeReboot`, …, `Unknown`).
    pub const fn name(self) -> &'static str {
        match self {
            RecoveryAction::None => "None",
            RecoveryAction::GpuReset => "GpuReset",
            RecoveryAction::NodeReboot => "NodeReboot",
            RecoveryAction::DrainP2p => "DrainP2P",
            RecoveryAction::DrainAndReset => "DrainAndReset",
            RecoveryAction::RecoverImexDomain => "RecoverImexDomain",
            RecoveryAction::BusReset => "BusReset",
            RecoveryAction::SystemReboot => "SystemReboot",
            RecoveryAction::Other(_) => "Unknown",
        }
    }

    /// What an SRE should do about it.
    pub const fn advice(self) -> &'static str {
        match self {
            RecoveryAction::None => "No recovery needed; new processes may start.",
            RecoveryAction::GpuReset => "Stop the GPU's processes and reset it (nvidia-smi -r).",
            RecoveryAction::NodeReboot | RecoveryAction::SystemReboot => {
                "Drain the node and reboot it; the driver reports the OS state may be inconsistent."
            }
            RecoveryAction::DrainP2p => "Stop peer-to-peer (NVLink/PCIe P2P) work on this GPU.",
            RecoveryAction::DrainAndReset => "Drain the GPU's work, then reset it.",
            RecoveryAction::RecoverImexDomain => "Recover the IMEX domain this GPU belongs to.",
            RecoveryAction::BusReset => "Reset the GPU's PCIe bus.",
            RecoveryAction::Other(_) => "Unknown recovery action; consult NVIDIA's documentation for this driver.",
        }
    }

    /// True when the node must be rebooted (the driver's strongest demand).
    pub const fn requires_reboot(self) -> bool {
        matches!(self, RecoveryAction::NodeReboot | RecoveryAction::SystemReboot)
    }

    /// The target value of an XID 154 message: the number in `to 0xN (...)`, not the words.
    ///
    /// Returns `None` when the message does not have that shape.
    pub fn from_xid154_message(message: &str) -> Option<RecoveryAction> {
        let lower = message.to_ascii_lowercase();
        let at = lower.rfind(" to 0x")?;
        let digits: &str = &lower[at + " to 0x".len()..];
        let end = digits.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(digits.len());
        let hex = digits.get(..end).filter(|h| !h.is_empty() && h.len() <= 8)?;
        u32::from_str_radix(hex, 16).ok().map(RecoveryAction::from_code)
    }
}

impl fmt::Display for RecoveryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryAction::Other(code) => write!(f, "Unknown(0x{code:x})"),
            known => f.write_str(known.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xid154_message_is_read_by_number_not_words() {
        let m = "GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)";
        assert_eq!(RecoveryAction::from_xid154_message(m), Some(RecoveryAction::NodeReboot));
        // Drivers disagree on the words for 0x1; the number decides.
        let pf = "GPU recovery action changed from 0x0 (None) to 0x1 (PF FLR)";
        assert_eq!(RecoveryAction::from_xid154_message(pf), Some(RecoveryAction::GpuReset));
        let back = "GPU recovery action changed from 0x1 (GPU Reset Required) to 0x0 (None)";
        assert_eq!(RecoveryAction::from_xid154_message(back), Some(RecoveryAction::None));
        let upper = "GPU recovery action changed from 0X0 (None) TO 0X4 (Drain and Reset)";
        assert_eq!(RecoveryAction::from_xid154_message(upper), Some(RecoveryAction::DrainAndReset));
    }

    #[test]
    fn xid154_message_without_a_target_is_none() {
        assert_eq!(RecoveryAction::from_xid154_message("GPU recovery action changed"), None);
        assert_eq!(RecoveryAction::from_xid154_message("changed to 0x (None)"), None);
        assert_eq!(RecoveryAction::from_xid154_message("to 0xffffffffff (overflow)"), None);
        assert_eq!(RecoveryAction::from_xid154_message(""), None);
    }

    #[test]
    fn unknown_values_round_trip() {
        let a = RecoveryAction::from_xid154_message("from 0x0 (None) to 0x1f (Future)");
        assert_eq!(a, Some(RecoveryAction::Other(0x1f)));
        assert_eq!(RecoveryAction::Other(0x1f).code(), 0x1f);
        assert_eq!(RecoveryAction::Other(0x1f).to_string(), "Unknown(0x1f)");
        for code in 0..8 {
            assert_eq!(RecoveryAction::from_code(code).code(), code);
        }
        assert!(RecoveryAction::from_code(2).requires_reboot());
        assert!(!RecoveryAction::from_code(1).requires_reboot());
    }
}
