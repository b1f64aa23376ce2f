//! Auto-Lambda: task weights learned on a validation batch through one inner step.

use crate::{
    checkpoint::StrategyState,
    error::{MtlError, Result},
    host_optim::HostAdam,
    strategy::{positive, Combination, GradientSpace, Needs, StepInput, Strategy},
};
use metl_models::Params;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Settings of [`AutoLambda`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoLambdaConfig {
    /// Initial weight of every task (default 0.1, the paper's code).
    pub init: f64,
    /// Adam learning rate of the weights (default 1e-4, the paper's code for dense tasks).
    pub lr: f64,
}

impl Default for AutoLambdaConfig {
    fn default() -> Self {
        Self { init: 0.1, lr: 1e-4 }
    }
}

impl AutoLambdaConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        positive("auto_lambda.init", self.init)?;
        positive("auto_lambda.lr", self.lr)
    }
}

/// Auto-Lambda (Liu, Liang, Davison & Johns 2022, "Auto-Lambda: disentangling dynamic task
/// relationships"): the task weights `λ` minimise the validation loss (of every task: all
/// are primary) after one virtual SGD step of the weighted training loss,
///
/// ```text
/// θ'(λ) = θ − α Σᵢ λᵢ ∇Lᵢ(θ),     λ ← Adam(λ, ∇_λ L_val(θ'(λ))),    update = Σᵢ λᵢ gᵢ
/// ∇_λᵢ L_val(θ'(λ)) = −α ⟨∇L_val(θ'), ∇Lᵢ(θ)⟩
/// ```
///
/// with `α` the model optimizer's learning rate. The paper's code estimates the last inner
/// product by central finite differences of `Lᵢ` at `θ ± ε∇L_val(θ')`; it is computed here
/// exactly from the per-task gradients already at hand (shared and task-specific), which
/// costs one validation forward and backward per step. The model step uses the updated `λ`.
///
/// On several ranks ([`crate::MtlStep::set_collective`]) each rank evaluates its own shard
/// of the validation batch; the inner products above are summed over the ranks, so that
/// `λ` moves exactly as with the whole validation batch in one process.
#[derive(Debug, Clone)]
pub struct AutoLambda {
    lambda: Vec<f64>,
    adam: HostAdam,
}

impl AutoLambda {
    /// Auto-Lambda for `num_tasks` tasks.
    pub fn new(config: &AutoLambdaConfig, num_tasks: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self { lambda: vec![config.init; num_tasks], adam: HostAdam::new(num_tasks, config.lr, 0.0) })
    }

    /// The current weights of all tasks.
    pub fn task_weights(&self) -> &[f64] {
        &self.lambda
    }
}

impl Strategy for AutoLambda {
    fn name(&self) -> &'static str {
        "auto_lambda"
    }

    fn needs(&self) -> Needs {
        Needs { validation: true, ..Needs::gradients(GradientSpace::Parameters) }
    }

    fn combine(&mut self, input: &StepInput<'_>) -> Result<Combination> {
        let bilevel = input.bilevel.ok_or_else(|| MtlError::Unsupported {
            strategy: "auto_lambda",
            reason: "needs a validation batch".into(),
        })?;
        let alpha = bilevel.inner_lr();
        let lam: Vec<f64> = input.tasks.iter().map(|&t| self.lambda[t]).collect();
        let j = input.jacobian()?;
        // The virtual step θ' = θ − α Σᵢ λᵢ gᵢ, as fresh leaves.
        let shared_step = StepInput::combine_rows(j, &lam)?;
        let flat = input.shared.flatten().f_detach()?;
        let shared_phi = input.shared.unflatten(&(flat - shared_step * alpha))?.detached_leaves();
        let mut phi = shared_phi.shallow_clone();
        let mut leaves: Vec<Tensor> = shared_phi.tensors().iter().map(Tensor::shallow_clone).collect();
        for (t, spec) in input.specific.iter().enumerate() {
            let stepped = match input.tasks.iter().position(|&u| u == t) {
                Some(i) => {
                    spec.zip_map(&input.specific_grads[i], |_, p, g| p.detach() - g * (alpha * lam[i]))?
                }
                None => spec.detach(),
            }
            .detached_leaves();
            if input.tasks.contains(&t) {
                leaves.extend(stepped.tensors().iter().map(Tensor::shallow_clone));
            }
            phi = phi.merge(&stepped)?;
        }
        let val = bilevel.validation_losses(&phi)?;
        let val: Vec<Tensor> = val.into_iter().flatten().collect();
        if val.is_empty() {
            return Ok(Combination::weighted(lam));
        }
        let total = val.iter().skip(1).fold(val[0].shallow_clone(), |a, b| a + b);
        let grads = Params::from_named(
            leaves.iter().enumerate().map(|(i, t)| (i.to_string(), t.shallow_clone())).collect(),
        )?
        .grads(&total, false)?;
        let n_shared = shared_phi.len();
        let d_shared = Tensor::f_cat(
            &grads.tensors()[..n_shared].iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(),
            0,
        )?;
        let mut inner =
            Vec::<f64>::try_from(j.f_mv(&d_shared.f_to_kind(j.kind())?)?.f_to_kind(Kind::Double)?)?;
        let mut offset = n_shared;
        for (t, spec) in input.specific.iter().enumerate() {
            if let Some(i) = input.tasks.iter().position(|&u| u == t) {
                for (g_val, g_train) in
                    grads.tensors()[offset..offset + spec.len()].iter().zip(input.specific_grads[i].tensors())
                {
                    inner[i] += (g_val * g_train).f_sum(Kind::Double)?.double_value(&[]);
                }
                offset += spec.len();
            }
        }
        // On several ranks the validation losses are this rank's shares of the whole
        // validation batch's, and so are these inner products: their sum is the whole's.
        input.collective().all_reduce_f64(&mut inner, metl_dist::ReduceOp::Sum, j.device())?;
        let mut hyper = vec![0.0; self.lambda.len()];
        for (&t, v) in input.tasks.iter().zip(&inner) {
            hyper[t] = -alpha * v;
        }
        self.adam.step(&mut self.lambda, &hyper);
        Ok(Combination::weighted(input.tasks.iter().map(|&t| self.lambda[t]).collect()))
    }

    /// The task weights `λ` and their Adam.
    fn state(&self) -> StrategyState {
        self.adam.save("adam", StrategyState::default().with_values("lambda", self.lambda.clone()))
    }

    fn load_state(&mut self, state: &StrategyState) -> Result<()> {
        let mut r = state.reader(self.name());
        let lambda = r.values("lambda", self.lambda.len())?;
        let adam = self.adam.load("adam", &mut r)?;
        r.finish()?;
        self.lambda = lambda;
        self.adam = adam;
        Ok(())
    }
}
