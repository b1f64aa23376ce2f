//! Mixture-of-experts building blocks: a group of expert networks and a softmax gate.

use crate::{
    error::{ModelError, Result},
    layers::{Layout, Linear},
    params::ParamsBuilder,
    staged::StagedModel,
    Mode, Model, Params,
};
use tch::{nn, Kind, Tensor};

/// The `nn::Path` for a dotted name (`experts_shared.3` → `path / experts_shared / 3`).
pub(crate) fn sub_path<'a>(path: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted.split('.').fold(path.clone(), |p, part| p.sub(part))
}

/// `count` independent copies of an expert network, parameters `{prefix}.{k}.*`.
#[derive(Debug, Clone)]
pub(crate) struct Experts<E> {
    prefix: String,
    experts: Vec<E>,
}

impl<E: Model + Clone> Experts<E> {
    pub(crate) fn new(prefix: impl Into<String>, expert: &E, count: usize) -> Self {
        Self { prefix: prefix.into(), experts: vec![expert.clone(); count] }
    }

    fn name(&self, k: usize) -> String {
        format!("{}.{k}", self.prefix)
    }

    pub(crate) fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut params = Params::empty();
        for (k, e) in self.experts.iter().enumerate() {
            let name = self.name(k);
            params = params.merge(&e.init(&sub_path(path, &name))?.prefixed(&name))?;
        }
        Ok(params)
    }

    /// Every expert on `x`, stacked: `[E, B, ...]`.
    pub(crate) fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        let outputs: Vec<Tensor> = self
            .experts
            .iter()
            .enumerate()
            .map(|(k, e)| e.forward(&params.sub(&self.name(k)), x, train))
            .collect();
        Tensor::stack(&outputs, 0)
    }

    pub(crate) fn buffers(&self) -> Params {
        let entries = self.experts.iter().enumerate().flat_map(|(k, e)| {
            let b = e.buffers().prefixed(&self.name(k));
            b.iter().map(|(n, t)| (n.to_owned(), t.shallow_clone())).collect::<Vec<_>>()
        });
        Params::from_named(entries.collect()).expect("prefixes keep names apart")
    }

    pub(crate) fn load_buffers(&self, buffers: &Params) -> Result<()> {
        self.experts.iter().enumerate().try_for_each(|(k, e)| e.load_buffers(&buffers.sub(&self.name(k))))
    }
}

impl<E: StagedModel + Clone> Experts<E> {
    /// Stage `stage` of every expert on `h`: `E` tensors.
    pub(crate) fn forward_stage(&self, params: &Params, stage: usize, h: &Tensor, mode: Mode) -> Vec<Tensor> {
        self.experts
            .iter()
            .enumerate()
            .map(|(k, e)| e.forward_stage(&params.sub(&self.name(k)), stage, h, mode))
            .collect()
    }

    /// The first expert (all have the same architecture).
    pub(crate) fn first(&self) -> Option<&E> {
        self.experts.first()
    }
}

/// Shared experts `experts_shared.{e}` and each task's experts `experts_specific.{t}.{e}`
/// (CGC, PLE).
#[derive(Debug, Clone)]
pub(crate) struct ExpertGroups<E> {
    pub shared: Experts<E>,
    pub specific: Vec<Experts<E>>,
}

impl<E: Model + Clone> ExpertGroups<E> {
    pub(crate) fn new(expert: &E, shared: usize, per_task: usize, tasks: usize) -> Self {
        Self {
            shared: Experts::new("experts_shared", expert, shared),
            specific: (0..tasks)
                .map(|t| Experts::new(format!("experts_specific.{t}"), expert, per_task))
                .collect(),
        }
    }

    pub(crate) fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let groups = std::iter::once(&self.shared).chain(&self.specific);
        groups.map(|g| g.init(path)).try_fold(Params::empty(), |acc, p| acc.merge(&p?))
    }

    pub(crate) fn buffers(&self) -> Params {
        let groups = std::iter::once(&self.shared).chain(&self.specific);
        super::concat(groups.map(Experts::buffers)).expect("prefixes keep names apart")
    }

    pub(crate) fn load_buffers(&self, buffers: &Params) -> Result<()> {
        std::iter::once(&self.shared).chain(&self.specific).try_for_each(|g| g.load_buffers(buffers))
    }
}

/// A softmax gate `g(x) = softmax(W flatten(x) + b)` over `n` experts, parameters
/// `{prefix}.0.weight` `[n, D]` and `{prefix}.0.bias` `[n]` (LibMTL's
/// `nn.Sequential(nn.Linear(D, n), nn.Softmax(-1))`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gate {
    linear: Linear,
}

impl Gate {
    pub(crate) fn new(prefix: &str, input_size: i64, experts: usize) -> Self {
        Self { linear: Linear::new(format!("{prefix}.0"), input_size, experts as i64) }
    }

    pub(crate) fn init(&self, builder: &mut ParamsBuilder<'_>) -> Result<()> {
        self.linear.init(builder)
    }

    /// The mixture weights `[B, n]` for a batch `x` `[B, ...]`.
    pub(crate) fn weights(&self, params: &Params, x: &Tensor) -> Tensor {
        self.linear.forward(params, &x.flatten(1, -1), Layout::Single).softmax(-1, None::<Kind>)
    }
}

/// `Σ_e w[b, e] · experts[e, b, ...]` for stacked experts `[E, B, ...]` and weights `[B, E]`.
pub(crate) fn mix(experts: &Tensor, weights: &Tensor) -> Tensor {
    let size = experts.size();
    let mut shape = vec![size[0], size[1]];
    shape.resize(size.len(), 1);
    (experts * weights.transpose(0, 1).reshape(shape)).sum_dim_intlist(0, false, None::<Kind>)
}

/// The number of input features `D` of a per-sample input shape, or an error naming
/// `field`.
pub(crate) fn input_size(field: &'static str, input_shape: &[i64]) -> Result<i64> {
    if input_shape.is_empty() || input_shape.iter().any(|&d| d < 1) {
        return Err(ModelError::invalid(
            field,
            format!("{input_shape:?}"),
            "must be the per-sample input shape, every size >= 1",
        ));
    }
    Ok(input_shape.iter().product())
}

/// Errors unless there is at least one task head.
pub(crate) fn check_heads(field: &'static str, heads: usize) -> Result<()> {
    if heads == 0 {
        return Err(ModelError::invalid(field, 0, "needs at least one task head"));
    }
    Ok(())
}
