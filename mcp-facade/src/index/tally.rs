//! Counts that go up and down with watch events: a counted multiset, and counts per verdict and per probe state.

use std::collections::BTreeMap;

use gpuscope_crds::Health;

use crate::freshness::ProbeState;
use crate::problems::rank;

/// How many of each key, in key order; a key whose count drops to zero is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally<K: Ord>(BTreeMap<K, u64>);

impl<K: Ord> Default for Tally<K> {
    fn default() -> Self {
        Tally(BTreeMap::new())
    }
}

impl<K: Ord> Tally<K> {
    /// Count `n` more of `key`.
    pub fn add(&mut self, key: K, n: u64) {
        if n > 0 {
            *self.0.entry(key).or_default() += n;
        }
    }

    /// Count `n` fewer of `key` (never below zero: removing what was never added is a no-op).
    pub fn remove(&mut self, key: &K, n: u64) {
        if let Some(count) = self.0.get_mut(key) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.0.remove(key);
            }
        }
    }

    /// Add (`add`) or remove `n` of `key`.
    pub fn change(&mut self, key: K, n: u64, add: bool) {
        if add { self.add(key, n) } else { self.remove(&key, n) }
    }

    /// The count of `key` (zero when absent).
    pub fn get(&self, key: &K) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Every key with its count, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, u64)> {
        self.0.iter().map(|(k, n)| (k, *n))
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Position of a verdict in severity order ([`rank`]), as an index.
fn health_rank(h: Health) -> usize {
    usize::from(rank(h))
}

/// The verdict at severity position `rank` ([`crate::problems::rank`]).
pub fn health_at(rank: usize) -> Health {
    match rank {
        0 => Health::Unhealthy,
        1 => Health::Degraded,
        2 => Health::Unknown,
        _ => Health::Healthy,
    }
}

/// Counts per verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthTally([usize; 4]);

impl HealthTally {
    /// Count one verdict more (`add`) or less.
    pub fn change(&mut self, h: Health, add: bool) {
        let slot = &mut self.0[health_rank(h)];
        *slot = if add { *slot + 1 } else { slot.saturating_sub(1) };
    }

    /// Add (`add`) or remove every count of `other`.
    pub fn merge(&mut self, other: &HealthTally, add: bool) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine = if add { *mine + theirs } else { mine.saturating_sub(theirs) };
        }
    }

    /// How many have verdict `h`.
    pub fn get(&self, h: Health) -> usize {
        self.0[health_rank(h)]
    }

    /// How many in all.
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

/// Counts per probe state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeTally([usize; 4]);

fn probe_slot(s: ProbeState) -> usize {
    match s {
        ProbeState::Reporting => 0,
        ProbeState::Stale => 1,
        ProbeState::Missing => 2,
        ProbeState::Unknown => 3,
    }
}

impl ProbeTally {
    /// Count one probe more (`add`) or less.
    pub fn change(&mut self, s: ProbeState, add: bool) {
        let slot = &mut self.0[probe_slot(s)];
        *slot = if add { *slot + 1 } else { slot.saturating_sub(1) };
    }

    /// How many probes are in state `s`.
    pub fn get(&self, s: ProbeState) -> usize {
        self.0[probe_slot(s)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_forgets_keys_that_drop_to_zero_and_never_goes_negative() {
        let mut t = Tally::default();
        t.add("b", 2);
        t.add("a", 1);
        t.add("c", 0);
        assert_eq!(t.iter().collect::<Vec<_>>(), [(&"a", 1), (&"b", 2)], "key order, no empty keys");
        t.remove(&"b", 1);
        t.change("a", 1, false);
        assert_eq!(t.iter().collect::<Vec<_>>(), [(&"b", 1)]);
        t.remove(&"z", 5);
        t.remove(&"b", 5);
        assert!(t.is_empty() && t.get(&"b") == 0);
    }

    #[test]
    fn health_and_probe_tallies_count_up_and_down_per_state() {
        let mut h = HealthTally::default();
        h.change(Health::Unhealthy, true);
        h.change(Health::Healthy, true);
        h.change(Health::Healthy, true);
        let mut fleet = HealthTally::default();
        fleet.merge(&h, true);
        fleet.merge(&h, true);
        fleet.change(Health::Healthy, false);
        assert_eq!((fleet.get(Health::Healthy), fleet.get(Health::Unhealthy), fleet.total()), (3, 2, 5));
        fleet.merge(&h, false);
        fleet.merge(&h, false);
        assert_eq!(fleet.total(), 0, "{fleet:?}");
        let mut p = ProbeTally::default();
        p.change(ProbeState::Stale, true);
        p.change(ProbeState::Stale, false);
        p.change(ProbeState::Stale, false);
        p.change(ProbeState::Missing, true);
        assert_eq!((p.get(ProbeState::Stale), p.get(ProbeState::Missing)), (0, 1));
        assert_eq!((0..4).map(health_at).map(health_rank).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }
}
