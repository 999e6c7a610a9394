//! A value kept as LZ4-compressed JSON. A GpuNodeStatus costs ~9 KB in memory as typed values and ~2 KB packed;
//! unpacking one takes ~30 µs (almost all of it JSON decoding), which an answer about one node can afford and an
//! answer about 5,000 nodes cannot. So the cache keeps each object packed, next to the few facts fleet-wide
//! answers read ([`crate::status_facts`]).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be packed or unpacked. Both are bugs (the cache packs what it decoded itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// The value did not serialize to JSON.
    #[error("cannot pack the object as JSON: {0}")]
    Encode(String),
    /// The bytes did not decompress.
    #[error("cannot decompress the packed object: {0}")]
    Decompress(String),
    /// The JSON did not decode into the expected type.
    #[error("cannot decode the packed object: {0}")]
    Decode(String),
}

/// LZ4-compressed JSON of one value, its length prepended.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedJson(Box<[u8]>);

impl std::fmt::Debug for PackedJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedJson({} bytes)", self.0.len())
    }
}

impl PackedJson {
    /// Pack `value`.
    pub fn pack<T: Serialize>(value: &T) -> Result<PackedJson, PackError> {
        let json = serde_json::to_vec(value).map_err(|e| PackError::Encode(e.to_string()))?;
        Ok(PackedJson(lz4_flex::compress_prepend_size(&json).into_boxed_slice()))
    }

    /// The JSON text, decompressed.
    pub fn json(&self) -> Result<Vec<u8>, PackError> {
        lz4_flex::decompress_size_prepended(&self.0).map_err(|e| PackError::Decompress(e.to_string()))
    }

    /// The value, decoded.
    pub fn unpack<T: DeserializeOwned>(&self) -> Result<T, PackError> {
        serde_json::from_slice(&self.json()?).map_err(|e| PackError::Decode(e.to_string()))
    }

    /// Bytes kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is kept (never, for a packed value: the length prefix alone is four bytes).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_fixtures::{healthy, with_xid};

    #[test]
    fn a_status_comes_back_equal_from_a_quarter_of_its_json() {
        let o = with_xid(healthy("n1", 8), 1, 79, 3, "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z");
        let packed = PackedJson::pack(&o).expect("pack");
        let json = serde_json::to_vec(&o).expect("json");
        assert!(packed.len() * 3 < json.len(), "{} packed of {} JSON bytes", packed.len(), json.len());
        assert_eq!(packed.json().expect("json"), json);
        assert_eq!(packed.unpack::<gpuscope_crds::GpuNodeStatus>().expect("unpack"), o);
    }

    #[test]
    fn damaged_bytes_and_a_wrong_type_are_errors_not_panics() {
        let packed = PackedJson::pack(&serde_json::json!({ "a": 1 })).expect("pack");
        let cut = PackedJson(packed.0[..packed.len() - 2].into());
        assert!(matches!(cut.json(), Err(PackError::Decompress(_))), "{:?}", cut.json());
        let wrong = packed.unpack::<Vec<u32>>().expect_err("an object is not a list");
        assert!(wrong.to_string().starts_with("cannot decode the packed object"), "{wrong}");
    }
}
