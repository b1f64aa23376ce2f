//! What distinguishes the members of the MAML family: which parameters adapt, the inner
//! learning rate rule, MAML++'s multi-step loss, the outer optimizer ([`FamilySettings`]).

use crate::{inner::InnerOptimizer, outer::LrSchedule};
use serde::{Deserialize, Serialize};

/// Which meta-parameters the inner loop adapts; the others are shared by all tasks as they
/// are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdaptedParams {
    /// Every parameter (MAML, Meta-SGD).
    #[default]
    All,
    /// Parameters whose name starts with one of these prefixes followed by `.`, or equals
    /// one (ANIL: the head).
    Prefixes(Vec<String>),
    /// Every parameter whose name contains none of these substrings (MAML++: all but the
    /// batch-norm weights).
    AllExcept(Vec<String>),
}

impl AdaptedParams {
    /// Whether parameter `name` is adapted.
    pub fn adapts(&self, name: &str) -> bool {
        match self {
            AdaptedParams::All => true,
            AdaptedParams::Prefixes(prefixes) => prefixes
                .iter()
                .any(|p| name == p || name.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('.'))),
            AdaptedParams::AllExcept(parts) => !parts.iter().any(|p| name.contains(p.as_str())),
        }
    }
}

/// The inner learning rate: fixed, or learned by the outer loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrRule {
    /// One fixed scalar α.
    Fixed(f64),
    /// Learned, one rate per weight, initialised uniformly in `[low, high]` (Meta-SGD).
    PerParameter {
        /// Lower end of the initial range.
        low: f64,
        /// Upper end of the initial range.
        high: f64,
    },
    /// One rate per parameter tensor and step, initialised to `init` (MAML++ LSLR);
    /// learned unless `learned` is false.
    PerStep {
        /// The initial rate.
        init: f64,
        /// Whether the outer loop learns the rates.
        learned: bool,
    },
}

/// MAML++'s multi-step loss: query losses after every inner step, weighted, with the
/// weights annealed towards the last step over the first `epochs` epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiStepLoss {
    /// Epochs during which the multi-step loss is used (afterwards only the last step).
    pub epochs: u64,
    /// Meta-iterations per epoch.
    pub iterations_per_epoch: u64,
}

impl MultiStepLoss {
    /// The step weights at meta-iteration `t` (1-based) for `k` inner steps, or `None` once
    /// the annealing is over. As in Antoniou et al.'s code: all start at `1/k`; each
    /// non-final weight decays by `e / (k · epochs)` at epoch `e`, down to `0.03 / k`; the final
    /// weight grows by `(k − 1)` times that, up to `1 − (k − 1) · 0.03 / k`.
    pub fn weights(&self, t: u64, k: usize) -> Option<Vec<f64>> {
        let epoch = t.saturating_sub(1) / self.iterations_per_epoch;
        if epoch >= self.epochs {
            return None;
        }
        let kf = k as f64;
        let decay = epoch as f64 / kf / self.epochs as f64;
        let floor = 0.03 / kf;
        let mut w = vec![(1.0 / kf - decay).max(floor); k];
        w[k - 1] = (1.0 / kf + decay * (kf - 1.0)).min(1.0 - (kf - 1.0) * floor);
        Some(w)
    }
}

/// Everything that distinguishes the members of the MAML family (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySettings {
    /// Inner steps during meta-training.
    pub inner_steps: usize,
    /// The inner learning rate.
    pub lr: LrRule,
    /// The inner update direction (SGD for all but Reptile, which may use Adam).
    pub inner_optimizer: InnerOptimizer,
    /// Support examples per inner step (`None`: the whole support set).
    pub inner_batch: Option<usize>,
    /// Which parameters adapt.
    pub adapted: AdaptedParams,
    /// Meta-iterations (from the first) that use first-order meta-gradients: 0 = always
    /// second order, `u64::MAX` = always first order.
    pub first_order_iterations: u64,
    /// MAML++'s multi-step loss, if used.
    pub multi_step_loss: Option<MultiStepLoss>,
    /// Call [`metl_models::Model::forward_at_step`] with the inner step (per-step batch-norm statistics).
    pub per_step_forward: bool,
    /// Adapt all tasks at once (default) or one after another.
    pub task_batched: bool,
    /// Second-order meta-gradients by gradient checkpointing of the inner loop: the same
    /// meta-gradient with memory that no longer grows with the inner steps (see the
    /// [module documentation](crate::maml_family)). Needs plain SGD inside.
    pub checkpointing: bool,
    /// With `task_batched`: tasks per pass (0: the whole meta-batch in one pass). Each pass
    /// is back-propagated before the next, so peak memory follows the pass, not the
    /// meta-batch; the meta-gradient is the same (the meta-loss is a mean over tasks).
    pub tasks_per_pass: usize,
    /// The outer optimizer.
    pub outer_optimizer: OuterOptimizer,
    /// Outer learning rate.
    pub outer_lr: f64,
    /// Its schedule.
    pub schedule: LrSchedule,
}

impl FamilySettings {
    /// The settings shared by most members: whole support sets, SGD inside, Adam outside
    /// at a constant rate, no multi-step loss, no per-step forward, task-batched.
    pub fn basic(inner_steps: usize, lr: LrRule, first_order: bool, outer_lr: f64) -> Self {
        Self {
            inner_steps,
            lr,
            inner_optimizer: InnerOptimizer::Sgd,
            inner_batch: None,
            adapted: AdaptedParams::All,
            first_order_iterations: if first_order { u64::MAX } else { 0 },
            multi_step_loss: None,
            per_step_forward: false,
            task_batched: true,
            checkpointing: false,
            tasks_per_pass: 0,
            outer_optimizer: OuterOptimizer::Adam,
            outer_lr,
            schedule: LrSchedule::Constant,
        }
    }
}

/// The optimizer of the outer loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterOptimizer {
    /// Adam with PyTorch's defaults (every member but Reptile).
    Adam,
    /// Plain SGD (Reptile's interpolation `θ ← θ − ε (θ − φ̄)`).
    Sgd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_step_weights_follow_antoniou_et_al() {
        let m = MultiStepLoss { epochs: 10, iterations_per_epoch: 500 };
        // Epoch 0: uniform.
        assert_eq!(m.weights(1, 5).unwrap(), vec![0.2; 5]);
        // Epoch 5: non-final 0.2 − 5/(5·10) = 0.1, final 0.2 + 4 · 0.1 = 0.6.
        let w = m.weights(5 * 500 + 1, 5).unwrap();
        for (a, b) in w.iter().zip([0.1, 0.1, 0.1, 0.1, 0.6]) {
            assert!((a - b).abs() < 1e-12, "{w:?}");
        }
        // Epoch 9: non-final 0.2 − 9/50 = 0.02 (above the floor 0.006), final 0.92.
        let w = m.weights(9 * 500 + 1, 5).unwrap();
        assert!((w[0] - 0.02).abs() < 1e-12 && (w[4] - 0.92).abs() < 1e-12, "{w:?}");
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(m.weights(10 * 500 + 1, 5).is_none());
    }

    #[test]
    fn adapted_params_select_by_name() {
        let head = AdaptedParams::Prefixes(vec!["head".into()]);
        assert!(head.adapts("head.weight") && head.adapts("head") && !head.adapts("header.weight"));
        let no_bn = AdaptedParams::AllExcept(vec!["norm".into()]);
        assert!(no_bn.adapts("blocks.0.conv.weight") && !no_bn.adapts("blocks.0.norm.weight"));
    }
}
