//! [`EpisodeConfig`]: the shape of a few-shot episode and of a meta-batch.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};

/// N-way K-shot episodes with Q queries per class, B per meta-batch.
///
/// The defaults are MAML's Omniglot setting (Finn et al. 2017): 5-way 1-shot, one query
/// per class (MAML draws `2K` examples per class, `K` to adapt and `K` to evaluate),
/// 32 tasks per meta-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EpisodeConfig {
    /// Classes per episode, N.
    pub ways: usize,
    /// Support examples per class, K.
    pub shots: usize,
    /// Query examples per class, Q.
    pub queries: usize,
    /// Episodes per meta-batch, B.
    pub meta_batch: usize,
    /// Draw all N classes of an episode from one group (for Omniglot: one alphabet), as
    /// in Lake et al.'s one-shot benchmark; a harder task than classes from anywhere.
    pub within_group: bool,
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        Self { ways: 5, shots: 1, queries: 1, meta_batch: 32, within_group: false }
    }
}

impl EpisodeConfig {
    /// `ways`-way `shots`-shot episodes with `queries` queries per class, other fields
    /// default.
    pub fn new(ways: usize, shots: usize, queries: usize) -> Self {
        Self { ways, shots, queries, ..Self::default() }
    }

    /// Checks that N, K, Q and B are at least 1.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("episode.ways", self.ways),
            ("episode.shots", self.shots),
            ("episode.queries", self.queries),
            ("episode.meta_batch", self.meta_batch),
        ] {
            if value == 0 {
                return Err(DataError::invalid(field, value, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Support examples per episode, `N·K`.
    pub fn support_size(&self) -> usize {
        self.ways * self.shots
    }

    /// Query examples per episode, `N·Q`.
    pub fn query_size(&self) -> usize {
        self.ways * self.queries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_shots_name_the_field() {
        let err = EpisodeConfig::new(5, 0, 15).validate().unwrap_err().to_string();
        assert_eq!(err, "episode.shots = 0: must be at least 1");
        assert!(EpisodeConfig::default().validate().is_ok());
        let parsed: EpisodeConfig = serde_json::from_str(r#"{"ways": 20}"#).unwrap();
        assert_eq!(parsed, EpisodeConfig { ways: 20, ..Default::default() });
        assert!(serde_json::from_str::<EpisodeConfig>(r#"{"way": 20}"#).is_err());
    }
}
