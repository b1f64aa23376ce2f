//! Second-order meta-gradients by gradient checkpointing of the inner loop
//! ([`FamilySettings::checkpointing`](super::FamilySettings::checkpointing)).
//!
//! Back-propagating through `k` differentiable inner steps keeps every step's graph — the
//! support forward pass and its double-backward — alive until the outer backward pass, so
//! second-order MAML's memory grows linearly with `k`. Checkpointing keeps only the fast
//! weights and recomputes one step at a time during a hand-written backward pass
//! (reverse-mode through the recurrence `φ⁽ʲ⁺¹⁾ = Φⱼ(φ⁽ʲ⁾) = φ⁽ʲ⁾ − αʲ ⊙ ∇L^s(φ⁽ʲ⁾)`):
//!
//! ```text
//! forward (no graph):  φ⁽¹⁾, …, φ⁽ᵏ⁻¹⁾ stored (detached), query losses evaluated for their values;
//! backward:            a⁽ᵏ⁾ = 0;  for j = k − 1, …, 0:
//!     ψ = Φⱼ(φ̂)           recomputed with create_graph from φ̂ = a fresh leaf holding φ⁽ʲ⁾
//!                          (for j = 0: θ itself, so that the last backward lands in θ.grad)
//!     S = ⟨ψ, a⁽ʲ⁺¹⁾⟩ + wⱼ L^q(ψ) / P
//!     S.backward():        a⁽ʲ⁾ = ∂S/∂φ̂ = (∂Φⱼ/∂φ⁽ʲ⁾)ᵀ a⁽ʲ⁺¹⁾ + wⱼ ∇L^q(φ⁽ʲ⁺¹⁾)/P  (a vector-Jacobian
//!                          product through the Hessian of L^s), and the same backward
//!                          accumulates ∂S/∂θ_f and ∂S/∂α into .grad
//! ```
//!
//! where `wⱼ` are the weights of the query losses (`w = (0, …, 0, 1)`, or MAML++'s multi-step
//! weights) and `P` the number of parts the meta-batch is split into (1 task-batched, `T`
//! task by task). By the chain rule `Σⱼ` of these terms is exactly the meta-gradient of
//! `(1/P) Σⱼ wⱼ L^q(φ⁽ʲ⁺¹⁾)` with respect to θ_a (the adjoint a⁽⁰⁾, summed over the task
//! copies by `expand`'s backward), the frozen weights θ_f and the learned rates α — the
//! same numbers as the ordinary second-order backward, in a different summation order.
//!
//! **Trade-off.** Memory: one step's graph plus `k − 1` copies of the (task-stacked)
//! adapted weights, instead of `k` graphs. Compute: every inner step runs twice (once
//! without a graph, once with), i.e. about one extra support forward and backward per step;
//! the query losses are evaluated twice too (once for their values before any backward,
//! once inside the recomputed last steps).
//!
//! Batch norm in training mode updates running statistics on every forward pass; the
//! recomputation would count the steps twice, so the model's buffers are saved after the
//! forward pass and restored after the backward pass, leaving them as the ordinary path
//! leaves them.

use super::{backward::finite_meta_loss, Layout, MamlFamily};
use crate::{
    error::{MetaError, Result},
    learner::QueryOutcome,
};
use metl_data::TaskBatch;
use metl_models::{Model, Params};
use tch::{Kind, Tensor};

impl<M: Model> MamlFamily<M> {
    /// Back-propagates `1/parts` of the meta-loss of `batch` at meta-iteration `t` into the
    /// `.grad` of θ and the learned rates by gradient checkpointing (see the module
    /// docs of `maml_family::checkpointed`): the second-order meta-gradient with memory
    /// independent of the number of inner steps. Returns the meta-loss and the query
    /// outcome after the last step, as the ordinary path does.
    pub(super) fn checkpointed_meta_backward(
        &self,
        batch: &TaskBatch,
        t: u64,
        layout: Layout,
        parts: f64,
    ) -> Result<(f64, QueryOutcome)> {
        let k = self.settings.inner_steps;
        let multi_step = self.settings.multi_step_loss.and_then(|m| m.weights(t, k));
        let weight = |j: usize| match &multi_step {
            Some(w) => Some(w[j]),
            None => (j + 1 == k).then_some(1.0),
        };
        let support = self.support_sets(batch, k);

        // Forward without graphs: keep φ⁽¹⁾ … φ⁽ᵏ⁻¹⁾ and the meta-loss value.
        let (start, frozen) = self.detached_start(batch, layout);
        let lrs = self.learned_lrs.as_ref().map(Params::detach);
        let mut stored = Vec::with_capacity(k.saturating_sub(1));
        let (mut value, mut outcome) = (0.0, None);
        self.adapt(start, &frozen, lrs.as_ref(), &support, 0..k, false, layout, |j, fast| {
            if j + 1 < k {
                stored.push(fast.detach());
            }
            if let Some(w) = weight(j) {
                let o = tch::no_grad(|| self.outcome(fast, &frozen, batch, j, layout))?;
                value += w * o.loss.mean(Kind::Double).double_value(&[]);
                outcome = Some(o);
            }
            Ok(())
        })?;
        let value = finite_meta_loss(value, t)?;
        let outcome = outcome.ok_or_else(|| MetaError::invalid("meta.inner_steps", k, "must be >= 1"))?;
        let buffers = self.model.buffers().deep_copy();

        // Backward, one recomputed step at a time, from the last.
        let (theta, frozen) = self.start(batch, layout);
        let mut adjoint: Option<Params> = None;
        for j in (0..k).rev() {
            let from = match stored.pop() {
                Some(phi) => phi.detached_leaves(),
                None => theta.shallow_clone(),
            };
            let to = self.adapt(
                from.shallow_clone(),
                &frozen,
                self.learned_lrs.as_ref(),
                &support,
                j..j + 1,
                true,
                layout,
                |_, _| Ok(()),
            )?;
            let mut objective = adjoint.take().map(|a| {
                let terms: Vec<Tensor> =
                    to.tensors().iter().zip(a.tensors()).map(|(p, a)| (p * a).sum(None::<Kind>)).collect();
                Tensor::stack(&terms, 0).sum(None::<Kind>)
            });
            if let Some(w) = weight(j) {
                let query =
                    self.outcome(&to, &frozen, batch, j, layout)?.loss.mean(None::<Kind>) * (w / parts);
                objective = Some(match objective {
                    Some(sum) => sum + query,
                    None => query,
                });
            }
            let Some(objective) = objective else { continue };
            objective.f_backward()?;
            if j > 0 {
                adjoint = Some(from.map(|_, p| {
                    let g = p.grad();
                    if g.defined() {
                        g
                    } else {
                        p.zeros_like()
                    }
                }));
            }
        }
        if !buffers.is_empty() {
            self.model.load_buffers(&buffers)?;
        }
        Ok((value, outcome))
    }
}
