//! [`Split`]: the train / validation / test partition a sample or class belongs to.

use serde::{Deserialize, Serialize};

/// One of the three partitions of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to fit (meta-)parameters.
    Train,
    /// Used to choose hyper-parameters and checkpoints.
    Val,
    /// Used once, to report results.
    Test,
}

impl Split {
    /// All three splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The lower-case name (`train`, `val`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The position in [`Split::ALL`] (0, 1, 2); handy to index per-split arrays and to
    /// derive one independent random stream per split.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
