//! PCI bus ids in one normal form, so NVML's `00000000:3B:00.0` and the kernel log's `PCI:0000:3b:00` name the
//! same GPU: lower case, domain of at least 4 hex digits, bus and device of 2, and a function (`.0` when the
//! source omits it, as XID lines do).

use std::fmt;

/// A normalised PCI address (domain:bus:device.function).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciBusId {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number (0–31).
    pub device: u8,
    /// Function number (0–7).
    pub function: u8,
}

/// Why a string is not a PCI bus id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PCI bus id ({reason}): {input:?}; expected e.g. 0000:3b:00.0 or 00000000:3B:00.0")]
pub struct PciParseError {
    /// The input, truncated to 64 characters.
    pub input: String,
    /// What was wrong.
    pub reason: &'static str,
}

impl PciBusId {
    /// Parse `[PCI:]domain:bus:device[.function]` in any case, with a 1–8 digit domain.
    pub fn parse(text: &str) -> Result<PciBusId, PciParseError> {
        let err = |reason| PciParseError { input: text.chars().take(64).collect(), reason };
        let s = text.trim();
        let s = s.strip_prefix("PCI:").or_else(|| s.strip_prefix("pci:")).unwrap_or(s);
        let mut parts = s.split(':');
        let (Some(domain), Some(bus), Some(dev_fn), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err("needs domain:bus:device"));
        };
        let (device, function) = match dev_fn.split_once('.') {
            Some((d, f)) => (d, Some(f)),
            None => (dev_fn, None),
        };
        let hex = |field: &str, max_len: usize, what| {
            if field.is_empty() || field.len() > max_len || !field.bytes().all(|b| b.is_ascii_hexdigit()) {
                Err(err(what))
            } else {
                u32::from_str_radix(field, 16).map_err(|_| err(what))
            }
        };
        let domain = hex(domain, 8, "domain must be 1-8 hex digits")?;
        let bus = hex(bus, 2, "bus must be 1-2 hex digits")?;
        let device = hex(device, 2, "device must be 1-2 hex digits")?;
        let function = match function {
            Some(f) => hex(f, 1, "function must be one hex digit")?,
            None => 0,
        };
        if device > 0x1f {
            return Err(err("device must be at most 1f"));
        }
        if function > 7 {
            return Err(err("function must be at most 7"));
        }
        // Bounds checked above: bus ≤ 0xff (2 hex digits), device ≤ 0x1f, function ≤ 7.
        Ok(PciBusId { domain, bus: bus as u8, device: device as u8, function: function as u8 })
    }

    /// Normalise any accepted spelling; `None` when the text is not a PCI bus id.
    pub fn normalize(text: &str) -> Option<String> {
        PciBusId::parse(text).ok().map(|id| id.to_string())
    }
}

impl fmt::Display for PciBusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

impl std::str::FromStr for PciBusId {
    type Err = PciParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PciBusId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvml_and_kernel_spellings_normalise_to_the_same_id() {
        let nvml = PciBusId::normalize("00000000:3B:00.0");
        let kernel = PciBusId::normalize("PCI:0000:3b:00");
        let legacy = PciBusId::normalize("0000:3b:00");
        assert_eq!(nvml.as_deref(), Some("0000:3b:00.0"));
        assert_eq!(nvml, kernel);
        assert_eq!(nvml, legacy);
    }

    #[test]
    fn other_domains_and_functions_are_kept() {
        assert_eq!(PciBusId::normalize("0001:c1:1f.3").as_deref(), Some("0001:c1:1f.3"));
        assert_eq!(PciBusId::normalize("00010000:01:00.0").as_deref(), Some("10000:01:00.0"));
    }

    #[test]
    fn malformed_ids_are_rejected_with_a_reason() {
        for bad in ["", "PCI:...", "3b:00.0", "0000:3b:00.8", "0000:3b:20.0", "0000:3bb:00.0", "0000:zz:00.0"] {
            let e = PciBusId::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("expected e.g."), "{e}");
        }
    }
}
