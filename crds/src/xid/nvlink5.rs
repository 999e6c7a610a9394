//! NVLink5 XIDs (144–150): the severity token and subcode name the driver prints after the code.
//!
//! NVIDIA's decode table for WORKFLOW_NVLINK5_ERR gives each (XID, subcode, error status) a severity (Fatal,
//! Non-fatal, Link Fatal) and a remedy (IGNORE, RESET_GPU, follow XID 154). The driver's line already carries the
//! subcode name and a plain severity token, e.g. `149, NETIR_LINK_EVT Fatal XC0 i0 Link 00 (0x…)`, so the verdict
//! reads them from the message rather than decoding register bits.

use serde::Serialize;

/// The severity token of an NVLink5 XID line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Nvlink5Severity {
    /// `Fatal` (NVIDIA's Fatal and Link Fatal rows): the GPU needs a reset.
    Fatal,
    /// `Nonfatal` (NVIDIA's Non-fatal rows): ignored unless it repeats.
    Nonfatal,
}

/// What an NVLink5 XID line says beyond its code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nvlink5Line {
    /// The subcode name, e.g. `NETIR_LINK_EVT`, when the line starts with one.
    pub subcode: Option<String>,
    /// The severity token, when the line has one.
    pub severity: Option<Nvlink5Severity>,
}

/// Whether `code` is an NVLink5 XID (NVIDIA's WORKFLOW_NVLINK5_ERR).
pub const fn is_nvlink5(code: u32) -> bool {
    matches!(code, 144..=150)
}

/// Reads the subcode and severity token from the driver text after the code (the XID event's `message`).
///
/// The token is looked for among the first few words only, so a word deeper in free text cannot pass for it.
pub fn decode(message: &str) -> Nvlink5Line {
    let words: Vec<&str> = message.split_whitespace().take(4).collect();
    let subcode = words
        .first()
        .map(|w| w.trim_end_matches([',', ':']))
        .filter(|w| {
            w.len() >= 3
                && w.contains('_')
                && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string);
    let severity = words.iter().find_map(|w| {
        let w = w.trim_end_matches([',', ':', ';']).to_ascii_lowercase();
        match w.as_str() {
            "fatal" => Some(Nvlink5Severity::Fatal),
            "nonfatal" | "non-fatal" => Some(Nvlink5Severity::Nonfatal),
            _ => None,
        }
    });
    Nvlink5Line { subcode, severity }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_severity_token_and_subcode_are_read_from_the_line() {
        let fatal = decode("NETIR_LINK_EVT Fatal XC0 i0 Link 00 (0x00000001 0x00000000 0x00000000 0x00000000)");
        assert_eq!(
            fatal,
            Nvlink5Line { subcode: Some("NETIR_LINK_EVT".into()), severity: Some(Nvlink5Severity::Fatal) }
        );
        let nonfatal = decode("RLW_REMAP Nonfatal XC0 i1 Link 03 (0x00000100)");
        assert_eq!(nonfatal.severity, Some(Nvlink5Severity::Nonfatal));
        assert_eq!(decode("SAW_MVB Non-fatal XC1").severity, Some(Nvlink5Severity::Nonfatal));
        assert_eq!(decode("something else entirely here, fatal later in the text"), Nvlink5Line::default());
        assert_eq!(decode(""), Nvlink5Line::default());
    }
}
