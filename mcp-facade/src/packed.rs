//! A value kept as LZ4-compressed JSON. A GpuNodeStatus costs ~9 KB in memory as typed values and ~2 KB packed
//! alone; unpacking one takes ~30 µs (almost all of it JSON decoding), which an answer about one node can afford
//! and an answer about 5,000 nodes cannot. So the cache keeps each object packed, next to the few facts
//! fleet-wide answers read ([`crate::status_facts`]).
//!
//! Objects of one kind repeat each other: field names, models, driver versions, condition reasons. LZ4 can
//! compress against a dictionary of earlier text, so a [`Packer`] takes the first sizeable value it packs as its
//! dictionary and packs every later one against it (~0.75 KB instead of ~2 KB per 8-GPU node). Each packed value
//! holds its dictionary (shared, by reference), so it unpacks whatever the packer does next.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// LZ4 looks back at most 64 KiB, so a longer dictionary would only cost memory.
const MAX_DICTIONARY_BYTES: usize = 64 * 1024;

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

/// Text that packed values are compressed against.
#[derive(Clone, PartialEq, Eq)]
struct Dictionary(Arc<[u8]>);

impl Dictionary {
    /// The last 64 KiB of `json` (LZ4 matches the nearest text first).
    fn of(json: &[u8]) -> Dictionary {
        Dictionary(json[json.len().saturating_sub(MAX_DICTIONARY_BYTES)..].into())
    }
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dictionary({} bytes)", self.0.len())
    }
}

/// LZ4-compressed JSON of one value, its length prepended, and the dictionary it was compressed against.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedJson {
    bytes: Box<[u8]>,
    dictionary: Option<Dictionary>,
}

impl std::fmt::Debug for PackedJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dictionary = self.dictionary.as_ref().map_or(0, |d| d.0.len());
        write!(f, "PackedJson({} bytes, dictionary of {dictionary})", self.bytes.len())
    }
}

impl PackedJson {
    fn compress(json: &[u8], dictionary: Option<Dictionary>) -> PackedJson {
        let bytes = match &dictionary {
            Some(d) => lz4_flex::block::compress_prepend_size_with_dict(json, &d.0),
            None => lz4_flex::compress_prepend_size(json),
        };
        PackedJson { bytes: bytes.into_boxed_slice(), dictionary }
    }

    /// The JSON text, decompressed.
    pub fn json(&self) -> Result<Vec<u8>, PackError> {
        match &self.dictionary {
            Some(d) => lz4_flex::block::decompress_size_prepended_with_dict(&self.bytes, &d.0),
            None => lz4_flex::decompress_size_prepended(&self.bytes),
        }
        .map_err(|e| PackError::Decompress(e.to_string()))
    }

    /// The value, decoded.
    pub fn unpack<T: DeserializeOwned>(&self) -> Result<T, PackError> {
        serde_json::from_slice(&self.json()?).map_err(|e| PackError::Decode(e.to_string()))
    }

    /// Bytes kept for this value (its dictionary is shared and not counted).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is kept (never, for a packed value: the length prefix alone is four bytes).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Packs values of one kind against a dictionary: the JSON of the first value of at least `min_dictionary_bytes`
/// (smaller ones, e.g. a status with no GPUs yet, would teach it little and are packed on their own until then).
#[derive(Debug)]
pub struct Packer {
    min_dictionary_bytes: usize,
    dictionary: OnceLock<Dictionary>,
}

impl Packer {
    /// A packer whose dictionary will be the first value of at least `min_dictionary_bytes` of JSON.
    pub const fn new(min_dictionary_bytes: usize) -> Packer {
        Packer { min_dictionary_bytes, dictionary: OnceLock::new() }
    }

    /// Pack `value` against the dictionary, choosing it if there is none yet and `value` is big enough.
    pub fn pack<T: Serialize>(&self, value: &T) -> Result<PackedJson, PackError> {
        let json = to_json(value)?;
        let dictionary = match self.dictionary.get() {
            Some(d) => Some(d.clone()),
            None if json.len() >= self.min_dictionary_bytes => {
                Some(self.dictionary.get_or_init(|| Dictionary::of(&json)).clone())
            }
            None => None,
        };
        Ok(PackedJson::compress(&json, dictionary))
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, PackError> {
    serde_json::to_vec(value).map_err(|e| PackError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_fixtures::{healthy, with_xid};

    /// Packed on its own: a packer that never finds a value big enough for a dictionary.
    fn alone<T: Serialize>(value: &T) -> PackedJson {
        Packer::new(usize::MAX).pack(value).expect("pack")
    }

    #[test]
    fn a_status_comes_back_equal_from_a_quarter_of_its_json() {
        let o = with_xid(healthy("n1", 8), 1, 79, 3, "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z");
        let packed = alone(&o);
        let json = serde_json::to_vec(&o).expect("json");
        assert!(packed.len() * 3 < json.len(), "{} packed of {} JSON bytes", packed.len(), json.len());
        assert_eq!(packed.json().expect("json"), json);
        assert_eq!(packed.unpack::<gpuscope_crds::GpuNodeStatus>().expect("unpack"), o);
    }

    #[test]
    fn damaged_bytes_and_a_wrong_type_are_errors_not_panics() {
        let packed = alone(&serde_json::json!({ "a": 1 }));
        let cut = PackedJson { bytes: packed.bytes[..packed.len() - 2].into(), dictionary: None };
        assert!(matches!(cut.json(), Err(PackError::Decompress(_))), "{:?}", cut.json());
        let wrong = packed.unpack::<Vec<u32>>().expect_err("an object is not a list");
        assert!(wrong.to_string().starts_with("cannot decode the packed object"), "{wrong}");
    }

    #[test]
    fn a_packer_packs_later_statuses_against_the_first_big_one() {
        let packer = Packer::new(2_000);
        let small = packer.pack(&healthy("empty", 0)).expect("pack");
        assert!(small.dictionary.is_none(), "a status without GPUs teaches the dictionary little: {small:?}");
        let first = packer.pack(&healthy("n1", 8)).expect("pack");
        let later = with_xid(healthy("n2", 8), 3, 79, 2, "2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z");
        let packed = packer.pack(&later).expect("pack");
        let single = alone(&later);
        assert!(
            packed.len() * 2 < single.len(),
            "{} bytes against the dictionary, {} alone",
            packed.len(),
            single.len()
        );
        let (a, b) = (first.dictionary.expect("chosen"), packed.dictionary.clone().expect("kept"));
        assert!(Arc::ptr_eq(&a.0, &b.0), "one dictionary, shared");
        assert_eq!(packed.unpack::<gpuscope_crds::GpuNodeStatus>().expect("unpack"), later);
        assert_eq!(small.unpack::<gpuscope_crds::GpuNodeStatus>().expect("unpack"), healthy("empty", 0));
    }

    #[test]
    fn a_value_packed_against_a_dictionary_needs_that_dictionary() {
        let packer = Packer::new(1);
        packer.pack(&healthy("n1", 8)).expect("pack");
        let packed = packer.pack(&healthy("n2", 8)).expect("pack");
        let cut = PackedJson { bytes: packed.bytes[..packed.len() - 2].into(), ..packed.clone() };
        assert!(matches!(cut.json(), Err(PackError::Decompress(_))), "{:?}", cut.json());
        let other = PackedJson { dictionary: Some(Dictionary::of(b"{}")), ..packed };
        assert!(other.unpack::<gpuscope_crds::GpuNodeStatus>().is_err(), "the wrong dictionary is an error");
    }
}
