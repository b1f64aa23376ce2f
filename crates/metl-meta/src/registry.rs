//! The algorithms of this crate by name — for config files (`[meta.<name>]`), command
//! lines and listings (`metl list`) — from one table.
//!
//! **Adding an algorithm** is its own file plus one row of the table in `lib.rs`: the row
//! declares the module and gives the name configs use (written only there), the configuration type, the kind of learner
//! ([`Kind`]: what the caller hands it), the adaptation steps evaluated by default, how the
//! learner is built from [`Parts`], a summary and the paper. The serde enum
//! [`AlgorithmConfig`] (what `[meta.<name>]` parses into), [`ALGORITHMS`],
//! [`AlgorithmConfig::build`] and `metl list` all come from it; the `metl` runner builds
//! every learner through it.

use metl_models::{Params, TaskLoss};
use tch::nn;

/// One meta-learning algorithm: the name configs use, what it is, and its paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmInfo {
    /// The name in configs (`[meta.<name>]`, snake case), e.g. `meta_sgd`.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Authors, year, title.
    pub paper: &'static str,
    /// What kind of learner it is.
    pub kind: Kind,
}

/// What a learner is built from and how it adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Adapts by inner gradient steps on the whole model (for classification: the backbone
    /// with an N-way head), with the task loss.
    Gradient,
    /// Classifies by comparing embeddings of the backbone; no inner steps, any number of
    /// ways at test time.
    Metric,
    /// Pre-trains the backbone with a classifier of all training classes on plain labelled
    /// mini-batches (global labels), then fits a new head per episode.
    Pretraining,
}

/// What a learner is built from: the model (the backbone, or for [`Kind::Gradient`]
/// classification the backbone with its head), its freshly initialised parameters, the
/// `VarStore` holding them, the task loss, and for [`Kind::Pretraining`] the backbone's
/// feature dimension and the number of training classes.
#[derive(Debug)]
pub struct Parts<'a, M> {
    /// The model.
    pub model: M,
    /// Its parameters, variables of `vs`.
    pub params: Params,
    /// The store of `params`.
    pub vs: &'a nn::VarStore,
    /// The task loss (gradient learners).
    pub loss: TaskLoss,
    /// The backbone's output dimension (pre-training learners).
    pub features: i64,
    /// The number of training classes (pre-training learners).
    pub train_classes: usize,
}

/// The one table of algorithms, invoked in the crate root (`lib.rs`); see the module
/// documentation. Each row: `[mod FILE;] "name" => Variant(Config), Kind, |config| default
/// evaluation steps, |config, parts| learner, "summary", "paper";`
macro_rules! algorithm_table {
    ($(
        $(mod $module:ident;)?
        $name:literal => $variant:ident($config:ty), $kind:ident,
        |$sc:ident| $steps:expr,
        |$c:ident, $p:ident| $build:expr,
        $summary:literal, $paper:literal;
    )*) => {
        $($(pub mod $module;)?)*

        /// Every algorithm of metl-meta, in the order of `metl list` (see [`registry`]).
        pub const ALGORITHMS: &[registry::AlgorithmInfo] = &[
            $(registry::AlgorithmInfo { name: $name, summary: $summary, paper: $paper, kind: registry::Kind::$kind },)*
        ];

        /// A meta-learning algorithm and its settings as configured in `[meta.<name>]`.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub enum AlgorithmConfig {
            $(
                #[doc = $summary]
                #[serde(rename = $name)]
                $variant($config),
            )*
        }

        impl AlgorithmConfig {
            /// The `[meta.<name>]` key.
            pub fn name(&self) -> &'static str {
                match self {
                    $(AlgorithmConfig::$variant(_) => $name,)*
                }
            }

            /// What kind of learner it builds.
            pub fn kind(&self) -> registry::Kind {
                match self {
                    $(AlgorithmConfig::$variant(_) => registry::Kind::$kind,)*
                }
            }

            /// The adaptation steps evaluated by default: the inner steps of meta-training
            /// (0 for metric learners; the baselines' 100 epochs of head fitting).
            pub fn train_steps(&self) -> usize {
                match self {
                    $(AlgorithmConfig::$variant($sc) => $steps,)*
                }
            }

            /// The learner, from the parts its [`registry::Kind`] needs.
            pub fn build<M: metl_models::Model + 'static>(
                &self,
                parts: registry::Parts<'_, M>,
            ) -> error::Result<Box<dyn MetaLearner>> {
                match self {
                    $(AlgorithmConfig::$variant($c) => {
                        let $p = parts;
                        Ok(Box::new($build))
                    })*
                }
            }
        }
    };
}

pub use crate::{AlgorithmConfig, ALGORITHMS};

impl AlgorithmConfig {
    /// Whether it pre-trains on plain labelled mini-batches of all training classes (global
    /// labels) instead of episodes.
    pub fn pretrains(&self) -> bool {
        self.kind() == Kind::Pretraining
    }

    /// Whether it classifies by comparing embeddings (no inner gradient steps, any number
    /// of ways at test time).
    pub fn is_metric(&self) -> bool {
        self.kind() == Kind::Metric
    }

    /// Whether it adapts by inner gradient steps (evaluation takes a step count).
    pub fn takes_steps(&self) -> bool {
        !self.is_metric()
    }

    /// The per-example input shape the model must take for data of `input_shape`: the
    /// data's own, except for CAVIA, which appends its context parameters to the first
    /// dimension ([`crate::cavia::CaviaConfig::model_input_shape`]).
    pub fn model_input_shape(&self, input_shape: &[i64]) -> Vec<i64> {
        match self {
            AlgorithmConfig::Cavia(c) => c.model_input_shape(input_shape),
            _ => input_shape.to_vec(),
        }
    }
}

/// The algorithm called `name`, if any.
pub fn algorithm(name: &str) -> Option<&'static AlgorithmInfo> {
    ALGORITHMS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, a) in ALGORITHMS.iter().enumerate() {
            assert!(ALGORITHMS[i + 1..].iter().all(|b| b.name != a.name), "{}", a.name);
            assert_eq!(algorithm(a.name), Some(a));
        }
        assert!(algorithm("nope").is_none());
    }

    #[test]
    fn a_config_names_its_row() {
        let config: AlgorithmConfig = toml_like("maml");
        assert_eq!((config.name(), config.kind(), config.train_steps()), ("maml", Kind::Gradient, 1));
        let config: AlgorithmConfig = toml_like("protonet");
        assert_eq!((config.name(), config.kind(), config.train_steps()), ("protonet", Kind::Metric, 0));
    }

    /// `{ "<name>": {} }`: the algorithm with its default settings, as `[meta.<name>]`.
    fn toml_like(name: &str) -> AlgorithmConfig {
        serde_json::from_str(&format!("{{\"{name}\": {{}}}}")).unwrap()
    }
}
