//! The clusters a facade serves: one cache per kubeconfig context (or one offline set), the first the default; or
//! none at all (`--no-cluster`), when only the tools that need no cluster answer.

use crate::cache::ClusterCache;
use crate::error::{ToolError, check_name_len};
use crate::matching::{MAX_SUGGESTIONS, close_matches};

/// Why a set of clusters cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClustersError {
    /// Nothing to serve.
    #[error("no cluster to serve")]
    Empty,
    /// Two caches share a name, so `cluster` could not tell them apart.
    #[error("cluster \"{0}\" is given twice; each --context must be distinct")]
    Duplicate(String),
}

/// Every served cluster, default first.
#[derive(Clone, Debug)]
pub struct Clusters {
    caches: Vec<ClusterCache>,
}

impl Clusters {
    /// Serve these caches; the first is the default.
    pub fn new(caches: Vec<ClusterCache>) -> Result<Clusters, ClustersError> {
        if caches.is_empty() {
            return Err(ClustersError::Empty);
        }
        for (i, c) in caches.iter().enumerate() {
            if caches[..i].iter().any(|o| o.name() == c.name()) {
                return Err(ClustersError::Duplicate(c.name().to_string()));
            }
        }
        Ok(Clusters { caches })
    }

    /// No cluster: every call that needs one gets [`ToolError::NoCluster`].
    pub fn none() -> Clusters {
        Clusters { caches: Vec::new() }
    }

    /// The cluster a tool call asks for (`None`: the default), or an error naming the known ones.
    pub fn get(&self, name: Option<&str>) -> Result<&ClusterCache, ToolError> {
        if let Some(name) = name {
            check_name_len("cluster", name)?;
        }
        let Some(default) = self.default_cluster() else { return Err(ToolError::NoCluster) };
        let Some(name) = name else { return Ok(default) };
        self.caches.iter().find(|c| c.name() == name).ok_or_else(|| {
            let known: Vec<String> = self.caches.iter().map(|c| c.name().to_string()).collect();
            ToolError::UnknownCluster {
                name: name.to_string(),
                close: close_matches(name, known.iter().map(String::as_str), MAX_SUGGESTIONS),
                known,
            }
        })
    }

    /// The default cluster (the first given); `None` without clusters.
    pub fn default_cluster(&self) -> Option<&ClusterCache> {
        self.caches.first()
    }

    /// True when the facade serves no cluster (`--no-cluster`).
    pub fn is_empty(&self) -> bool {
        self.caches.is_empty()
    }

    /// Every cluster, default first.
    pub fn all(&self) -> &[ClusterCache] {
        &self.caches
    }

    /// Whether every cache has synced.
    pub fn all_ready(&self) -> bool {
        self.caches.iter().all(ClusterCache::is_ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(name: &str) -> ClusterCache {
        ClusterCache::from_objects(name, vec![], vec![], vec![])
    }

    #[test]
    fn default_is_first_and_unknown_names_list_the_known_ones() {
        let c = Clusters::new(vec![cache("prod"), cache("staging")]).expect("clusters");
        assert_eq!(c.get(None).map(ClusterCache::name), Ok("prod"));
        assert_eq!(c.get(Some("staging")).map(ClusterCache::name), Ok("staging"));
        let e = c.get(Some("stage")).expect_err("unknown");
        assert!(matches!(&e, ToolError::UnknownCluster { close, .. } if close == &["staging".to_string()]), "{e}");
        assert!(c.all_ready());
    }

    #[test]
    fn without_clusters_every_lookup_says_none_is_connected() {
        let none = Clusters::none();
        assert!(none.is_empty() && none.all_ready());
        assert_eq!(none.get(None).err(), Some(ToolError::NoCluster));
        assert_eq!(none.get(Some("prod")).err(), Some(ToolError::NoCluster));
        assert!(matches!(none.get(Some(&"x".repeat(300))), Err(ToolError::InvalidArgument { .. })));
    }

    #[test]
    fn empty_and_duplicate_sets_are_refused() {
        assert_eq!(Clusters::new(vec![]).err(), Some(ClustersError::Empty));
        assert_eq!(Clusters::new(vec![cache("a"), cache("a")]).err(), Some(ClustersError::Duplicate("a".into())));
    }
}
