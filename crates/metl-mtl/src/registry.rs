//! The registry: every strategy by name, with a one-line description and its
//! configuration ([`StrategyConfig`], a serde enum tagged by `name`, so that a config file
//! selects a strategy as `{ name = "cagrad", c = 0.4 }`).
//!
//! The list itself is the table in [`crate::strategies`] (one line per strategy); what a
//! strategy needs and its family are read from the strategy ([`StrategyInfo::needs`]).

pub use crate::strategies::{StrategyConfig, STRATEGIES};
use crate::{
    error::{MtlError, Result},
    strategy::{GradientSpace, Needs, Setup, Strategy},
};
use tch::{nn, Device};

/// The family a strategy belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Weights computed from the losses; one backward pass.
    LossBased,
    /// Uses per-task gradients (`T` backward passes, or one per task through the heads
    /// only in the representation space).
    GradientBased,
    /// Learns the weights on a validation batch.
    Bilevel,
}

impl Family {
    /// The family of a strategy that needs `needs`.
    pub fn of(needs: Needs) -> Self {
        if needs.validation {
            Family::Bilevel
        } else if needs.gradients.is_some() {
            Family::GradientBased
        } else {
            Family::LossBased
        }
    }
}

/// A registry entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategyInfo {
    /// The name used in configs (`{ name = "..." }`).
    pub name: &'static str,
    /// A one-line description with the paper.
    pub description: &'static str,
}

impl StrategyInfo {
    /// What the strategy needs, read from the strategy built with its default settings
    /// (for two tasks, on the CPU).
    pub fn needs(&self) -> Result<Needs> {
        let vs = nn::VarStore::new(Device::Cpu);
        let setup = Setup { num_tasks: 2, path: vs.root(), seed: 0 };
        Ok(build(self.name, &setup)?.needs())
    }

    /// The strategy's family, from what it needs.
    pub fn family(&self) -> Result<Family> {
        self.needs().map(Family::of)
    }

    /// What it needs besides the losses, in words (`metl list`).
    pub fn needs_description(&self) -> Result<String> {
        Ok(describe(self.needs()?))
    }
}

/// `needs` in words, e.g. `losses + shared-parameter gradients`.
pub fn describe(needs: Needs) -> String {
    let mut parts = vec!["losses".to_owned()];
    match needs.gradients {
        Some(space) => {
            let space = match (space, needs.validation) {
                (_, true) => "all-parameter",
                (GradientSpace::Parameters, false) => "shared-parameter",
                (GradientSpace::Representation, false) => "representation",
            };
            let samples =
                if needs.samples > 1 { format!(" of {} batch parts", needs.samples) } else { String::new() };
            parts.push(format!("{space} gradients{samples}"));
        }
        None if needs.validation => parts.push("all-parameter gradients".into()),
        None => {}
    }
    if needs.losses_after_step {
        parts.push("losses after the step (one extra forward)".into());
    }
    if needs.validation {
        parts.push("a validation batch".into());
    }
    parts.join(" + ")
}

/// The registry entry of `name`.
pub fn info(name: &str) -> Option<&'static StrategyInfo> {
    STRATEGIES.iter().find(|s| s.name == name)
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig::Ew(Default::default())
    }
}

impl StrategyConfig {
    /// The default settings of strategy `name`.
    pub fn default_for(name: &str) -> Result<Self> {
        Self::defaults(name).ok_or_else(|| MtlError::UnknownStrategy {
            name: name.to_owned(),
            known: STRATEGIES.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        })
    }

    /// Builds the strategy (validating the settings first).
    pub fn build(&self, setup: &Setup<'_>) -> Result<Box<dyn Strategy>> {
        if setup.num_tasks == 0 {
            return Err(MtlError::invalid("num_tasks", 0, "must be >= 1"));
        }
        self.construct(setup)
    }
}

/// Builds strategy `name` with its default settings.
pub fn build(name: &str, setup: &Setup<'_>) -> Result<Box<dyn Strategy>> {
    StrategyConfig::default_for(name)?.build(setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The needs read from each strategy, in words, as `metl list` has always printed them.
    #[test]
    fn needs_and_families_are_read_from_the_strategies() {
        let params = "losses + shared-parameter gradients";
        let representation = "losses + representation gradients";
        let three_parts = "losses + shared-parameter gradients of 3 batch parts";
        for info in STRATEGIES {
            let expected = match info.name {
                "ew" | "uw" | "dwa" | "rlw" | "gls" | "scale_invariant" | "imtl_l" | "stch" => "losses",
                "famo" => "losses + losses after the step (one extra forward)",
                "mgda_ub" | "graddrop" | "aligned_mtl_ub" => representation,
                "modo" | "sdmgrad" => three_parts,
                "auto_lambda" => "losses + all-parameter gradients + a validation batch",
                _ => params,
            };
            assert_eq!(info.needs_description().unwrap(), expected, "{}", info.name);
            let family = match expected {
                "losses" | "losses + losses after the step (one extra forward)" => Family::LossBased,
                "losses + all-parameter gradients + a validation batch" => Family::Bilevel,
                _ => Family::GradientBased,
            };
            assert_eq!(info.family().unwrap(), family, "{}", info.name);
        }
    }

    #[test]
    fn names_are_unique_and_every_name_builds_its_own_strategy() {
        let vs = nn::VarStore::new(Device::Cpu);
        for (i, a) in STRATEGIES.iter().enumerate() {
            assert!(STRATEGIES[i + 1..].iter().all(|b| b.name != a.name), "{}", a.name);
            assert_eq!(info(a.name), Some(a));
            let config = StrategyConfig::default_for(a.name).unwrap();
            assert_eq!(config.name(), a.name);
            let setup = Setup { num_tasks: 3, path: vs.root() / a.name, seed: 1 };
            assert_eq!(config.build(&setup).unwrap().name(), a.name, "the strategy's own name");
        }
        assert!(matches!(StrategyConfig::default_for("nope"), Err(MtlError::UnknownStrategy { .. })));
    }
}
