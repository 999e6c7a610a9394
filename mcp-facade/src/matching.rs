//! Close matches for a name the caller mistyped: case-insensitive equality, shared prefixes and substrings, then
//! small edit distances. Only error paths call this, so a linear scan over a large fleet is fine.

/// How many suggestions an error message carries.
pub const MAX_SUGGESTIONS: usize = 5;

/// Up to `max` candidates that look like `wanted`, best first.
pub fn close_matches<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>, max: usize) -> Vec<String> {
    let wanted_lc = wanted.to_lowercase();
    // Edit distance is quadratic: nothing longer than a Kubernetes name is worth comparing.
    if wanted_lc.is_empty() || wanted_lc.len() > 253 {
        return Vec::new();
    }
    // Allow about one typo per three characters, at least two.
    let budget = (wanted_lc.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|candidate| {
            let c = candidate.to_lowercase();
            let score = if c == wanted_lc {
                0
            } else if c.starts_with(&wanted_lc) || wanted_lc.starts_with(&c) {
                1
            } else if c.contains(&wanted_lc) {
                2
            } else {
                let d = edit_distance(&wanted_lc, &c);
                // A long shared start ("stage" / "staging") is a match even when the tails differ a lot.
                let shared = wanted_lc.chars().zip(c.chars()).take_while(|(a, b)| a == b).count();
                if d > budget && shared < (wanted_lc.chars().count() * 2 / 3).max(4) {
                    return None;
                }
                2 + d
            };
            Some((score, candidate))
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.len().cmp(&b.1.len())).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(max).map(|(_, c)| c.to_string()).collect()
}

/// Up to `max` candidates whose start looks like `wanted`, best first: for identifiers callers give by their
/// leading part (GPU UUIDs). A candidate's head of about `wanted`'s length is compared by edit distance (a typo
/// anywhere in the part given), and a long shared start counts as a match too; ties go to the longer shared start.
pub fn close_prefix_matches<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<String> {
    let wanted: Vec<char> = wanted.to_lowercase().chars().collect();
    let n = wanted.len();
    if n == 0 || n > 253 {
        return Vec::new();
    }
    let budget = (n / 3).max(2);
    let mut scored: Vec<(usize, usize, std::cmp::Reverse<usize>, &str)> = candidates
        .into_iter()
        .filter_map(|candidate| {
            let c: Vec<char> = candidate.to_lowercase().chars().collect();
            // Edit distance is at least the length difference: a much longer `wanted` cannot match (and this keeps
            // hostile input from costing a quadratic scan of the fleet).
            if n > c.len() + budget {
                return None;
            }
            let shared = wanted.iter().zip(&c).take_while(|(a, b)| a == b).count();
            // The head may be one shorter or longer than `wanted` (a dropped or doubled character); one pass gives
            // the distance to every head.
            let heads = edit_distance_row(&wanted, &c[..c.len().min(n + 1)]);
            let from = n.saturating_sub(1).min(heads.len().saturating_sub(1));
            let near = heads.get(from..)?;
            let distance = near.iter().min().copied()?;
            // "GPU-" plus the first group of eight hex digits already tells UUIDs apart.
            if distance > budget && shared < (n * 2 / 3).clamp(6, 12) {
                return None;
            }
            // Ties (a trailing character could be a typo or the start of the next group) go to the candidate
            // close at every length.
            let spread: usize = near.iter().sum();
            Some((distance, spread, std::cmp::Reverse(shared), candidate))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.3 == b.3);
    scored.into_iter().take(max).map(|(_, _, _, c)| c.to_string()).collect()
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    edit_distance_chars(&a, &b)
}

fn edit_distance_chars(a: &[char], b: &[char]) -> usize {
    edit_distance_row(a, b).last().copied().unwrap_or(a.len())
}

/// Element `j`: the edit distance between `a` and the first `j` characters of `b`.
fn edit_distance_row(a: &[char], b: &[char]) -> Vec<usize> {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("gpu-node-1", "gpu-node-1"), 0);
    }

    #[test]
    fn typos_prefixes_and_case_find_the_node() {
        let nodes = ["gpu-node-1", "gpu-node-2", "gpu-node-17", "cpu-node-1", "dgx-a100-03"];
        assert_eq!(close_matches("gpu-nod-1", nodes, 3), vec!["gpu-node-1", "cpu-node-1", "gpu-node-2"]);
        assert_eq!(close_matches("DGX", nodes, 3), vec!["dgx-a100-03"]);
        assert_eq!(close_matches("gpu-node-1", nodes, 2), vec!["gpu-node-1", "gpu-node-17"]);
        assert_eq!(close_matches("stage", ["staging", "prod"], 5), vec!["staging"]);
    }

    #[test]
    fn a_mistyped_uuid_prefix_finds_the_uuids_it_resembles() {
        let uuids = [
            "GPU-5a4c2e1b-0000-1111-2222-333344445555",
            "GPU-5a4c9f00-0000-1111-2222-333344445555",
            "GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff",
        ];
        // One wrong character in the part given.
        assert_eq!(close_prefix_matches("gpu-5a4c2e1c", uuids, 5), vec![uuids[0], uuids[1]]);
        // A dropped character.
        assert_eq!(close_prefix_matches("GPU-5a4c2e1-0000", uuids, 1), vec![uuids[0]]);
        // A long shared start is a match even when the rest differs a lot.
        assert_eq!(close_prefix_matches("GPU-5a4c2e1b-ffff-ffff-ffff", uuids, 5), vec![uuids[0]]);
        assert!(close_prefix_matches("GPU-00000000", uuids, 5).is_empty(), "a different UUID is no match");
        assert!(close_prefix_matches(&"x".repeat(200), uuids, 5).is_empty());
    }

    #[test]
    fn unrelated_names_suggest_nothing() {
        assert!(close_matches("storage-7", ["gpu-node-1", "gpu-node-2"], 5).is_empty());
        assert!(close_matches("", ["gpu-node-1"], 5).is_empty());
    }
}
