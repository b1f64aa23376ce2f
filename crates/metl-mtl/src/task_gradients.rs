//! The per-task gradients of one sample of a step: the `[k, D]` Jacobian `J` (row `t` is
//! task `t`'s gradient `gₜ`) that every gradient-based strategy receives, and each task's
//! gradients of its own parameters. One function, [`task_gradients`], computes them for
//! every strategy and both gradient spaces, on one process and on a data-parallel rank:
//!
//! - **Representation space** (`gₜ = ∂Lₜ/∂z`): the heads ran on a detached copy `z̃` of
//!   the representation; one backward pass per task through the heads, stopping at `z̃`.
//! - **Parameter space, heads on a detached representation** (what [`crate::MtlStep`] does
//!   for every model with a shared representation): the same pass per task through the
//!   heads gives `δₜ = ∂Lₜ/∂z̃` (with the gradients of the task's own parameters and of
//!   shared parameters used after the representation, `∂Lₜ/∂θ|after`); then **one**
//!   task-batched pass through the shared encoder with the `k` cotangents `δₜ`
//!   ([`crate::batched_vjp`], libtorch's batched gradients) gives all rows at once:
//!
//!   `gₜ = (∂z/∂θ)ᵀ δₜ + ∂Lₜ/∂θ|after`.
//!
//!   By the chain rule this is `∂Lₜ/∂θ`, the row the per-task passes give; the encoder's
//!   matrix products run once on `[k, ...]` tensors instead of `k` times. For an encoder
//!   with operators that do not batch efficiently (convolutions, batch norm, pooling: see
//!   [`crate::batched_vjp`]), or should libtorch fail on the batched pass, the encoder is
//!   traversed once per task instead, with the same result.
//! - **Parameter space otherwise** (models without a shared representation, losses given
//!   without one): one backward pass per task through the whole network.
//!
//! A task without a loss (a data-parallel rank without its labels) gets a zero row and
//! zero task-specific gradients.

use crate::{
    backward::TaskLosses,
    batched_vjp::batched_vjp,
    error::{MtlError, Result},
    jacobian::write_row,
    strategy::GradientSpace,
};
use metl_models::Params;
use tch::Tensor;

/// Per-task gradients of one sample.
pub(crate) struct SampleGrads {
    /// `[k, D]`: `D` the number of shared parameters (parameter space) or of entries of
    /// the representation (representation space).
    pub(crate) jacobian: Tensor,
    /// Every participating task's gradients of its own parameters.
    pub(crate) specific: Vec<Vec<Tensor>>,
    /// Representation space: every task's gradients of the shared parameters used after
    /// the representation (`None` where it uses none). `None`s in parameter space, where
    /// they are part of the Jacobian's rows.
    pub(crate) shared_after: Vec<Option<Vec<Tensor>>>,
}

/// One task's backward pass to the representation's leaf (if any), its own parameters
/// and the shared ones.
struct TaskPass {
    /// `∂Lₜ/∂z̃` (undefined where the loss does not reach `z̃`).
    leaf: Option<Tensor>,
    /// Gradients of the task's own parameters (zeros where not reached).
    specific: Vec<Tensor>,
    /// Gradients of the shared parameters (undefined where not reached).
    shared: Vec<Tensor>,
}

impl TaskPass {
    /// The backward pass of `loss` (`None`: no loss, all zero).
    fn run(loss: Option<&Tensor>, leaf: Option<&Tensor>, spec: &[Tensor], shared: &[Tensor]) -> Result<Self> {
        let Some(loss) = loss else {
            return Ok(Self {
                leaf: None,
                specific: spec.iter().map(Tensor::zeros_like).collect(),
                shared: shared.iter().map(|_| Tensor::new()).collect(),
            });
        };
        let mut inputs: Vec<&Tensor> = Vec::with_capacity(shared.len() + spec.len() + 1);
        inputs.extend(leaf);
        inputs.extend(spec.iter());
        inputs.extend(shared.iter());
        let mut g = Tensor::f_run_backward(&[loss], &inputs, true, false)?;
        let shared_g = g.split_off(leaf.is_some() as usize + spec.len());
        let spec_g = g.split_off(leaf.is_some() as usize);
        let leaf = g.pop().filter(Tensor::defined);
        Ok(Self { leaf, specific: defined_or_zeros(&spec_g, spec), shared: shared_g })
    }
}

/// The per-task gradients of `sample` in `space` (see the [module docs](self)): `losses`
/// are the participating tasks' losses (`tasks`, `None` for one without a loss on this
/// rank), `shared` the shared parameters and `spec_sets` every task's own. `name` is the
/// strategy's, for errors.
pub(crate) fn task_gradients(
    shared: &Params,
    name: &'static str,
    space: GradientSpace,
    sample: &TaskLosses,
    losses: &[Option<&Tensor>],
    tasks: &[usize],
    spec_sets: &[&Params],
) -> Result<SampleGrads> {
    let representation = sample.representation.as_ref();
    if space == GradientSpace::Representation && representation.is_none() {
        return Err(MtlError::Unsupported {
            strategy: name,
            reason: "representation gradients need the heads evaluated on a detached representation \
                     (a model with a shared representation; see Representation::detach)"
                .into(),
        });
    }
    let leaf = representation.map(|r| &r.leaf);
    let params = shared.tensors();
    let passes = tasks
        .iter()
        .zip(losses)
        .map(|(&t, loss)| TaskPass::run(*loss, leaf, spec_sets[t].tensors(), params))
        .collect::<Result<Vec<_>>>()?;
    let k = tasks.len() as i64;
    let (jacobian, shared_after) = match (space, representation) {
        (GradientSpace::Representation, Some(r)) => {
            let rows = leaf_rows(&passes, &r.leaf)?.f_reshape([k, -1])?;
            let after = passes
                .iter()
                .map(|p| p.shared.iter().any(Tensor::defined).then(|| defined_or_zeros(&p.shared, params)))
                .collect();
            (rows, after)
        }
        (_, Some(r)) => (
            through_encoder(shared, &passes, &r.encoded, &r.leaf, BATCHED_ENTRIES)?,
            passes.iter().map(|_| None).collect(),
        ),
        (_, None) => {
            let width = params.iter().map(|p| p.numel() as i64).sum::<i64>();
            // Every entry is written below (zeros where a loss does not reach a parameter).
            let jacobian = Tensor::f_empty([k, width], (shared.kind(), shared.device()))?;
            for (row, pass) in passes.iter().enumerate() {
                write_row(&jacobian.f_select(0, row as i64)?, &pass.shared, params)?;
            }
            (jacobian, passes.iter().map(|_| None).collect())
        }
    };
    let specific = passes.into_iter().map(|p| p.specific).collect();
    Ok(SampleGrads { jacobian, specific, shared_after })
}

/// The tasks' gradients `δₜ` of the representation's leaf `z̃`, stacked `[k, ...z̃]`
/// (zeros for a task whose loss does not reach it).
fn leaf_rows(passes: &[TaskPass], leaf: &Tensor) -> Result<Tensor> {
    let rows = passes
        .iter()
        .map(|p| p.leaf.as_ref().map_or_else(|| leaf.f_zeros_like(), |g| Ok(g.shallow_clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tensor::f_stack(&rows, 0)?)
}

/// The most entries of the representation's cotangents one batched pass takes (`k_c ·
/// numel(z)`; 128 MB in `f32`): more tasks go through the encoder in chunks of `k_c`, so
/// that the batched pass's memory stays bounded (its intermediate gradients are `k_c` times
/// the per-task ones).
const BATCHED_ENTRIES: i64 = 1 << 25;

/// The `[k, P]` parameter-space Jacobian from the heads' passes: the encoder's part
/// `(∂z/∂θ)ᵀ δₜ` of every task in one batched pass from the representation `encoded` (or
/// a few: at most `entries` entries of cotangents each, see [`BATCHED_ENTRIES`]), plus each
/// task's gradients of shared parameters used after it.
fn through_encoder(
    shared: &Params,
    passes: &[TaskPass],
    encoded: &Tensor,
    leaf: &Tensor,
    entries: i64,
) -> Result<Tensor> {
    let params = shared.tensors();
    let inputs: Vec<&Tensor> = params.iter().collect();
    let k = passes.len() as i64;
    let width = params.iter().map(|p| p.numel() as i64).sum::<i64>();
    // Every entry is written below.
    let jacobian = Tensor::f_empty([k, width], (shared.kind(), shared.device()))?;
    let reached = encoded.requires_grad() && passes.iter().any(|p| p.leaf.is_some());
    let cotangents = if reached { Some(leaf_rows(passes, leaf)?.f_to_kind(encoded.kind())?) } else { None };
    let chunk = (entries / (encoded.numel() as i64).max(1)).clamp(1, k);
    for start in (0..k).step_by(chunk as usize) {
        let rows = chunk.min(k - start);
        let encoder: Vec<Option<Tensor>> = match &cotangents {
            Some(c) => {
                let c = c.f_narrow(0, start, rows)?;
                match batched_vjp(&[encoded], &[&c], &inputs) {
                    Ok(Some(grads)) => grads,
                    Ok(None) | Err(_) => encoder_per_task(encoded, &c, params)?,
                }
            }
            None => params.iter().map(|_| None).collect(),
        };
        let mut offset = 0;
        for (p, from_encoder) in params.iter().zip(encoder) {
            let n = p.numel() as i64;
            let mut block = jacobian.f_narrow(0, start, rows)?.f_narrow(1, offset, n)?;
            match from_encoder {
                // Into the block's `[rows, ...shape]` view: one copy, whatever `g`'s strides.
                Some(g) => block.f_view(g.size().as_slice())?.f_copy_(&g)?,
                None => {
                    let _ = block.f_zero_()?;
                }
            }
            offset += n;
        }
    }
    // Shared parameters used after the representation.
    let mut offset = 0;
    for (i, p) in params.iter().enumerate() {
        let n = p.numel() as i64;
        for (row, pass) in passes.iter().enumerate() {
            let after = &pass.shared[i];
            if after.defined() {
                let mut entries = jacobian.f_select(0, row as i64)?.f_narrow(0, offset, n)?;
                let _ = entries.f_add_(&after.f_reshape([n])?.f_to_kind(entries.kind())?)?;
            }
        }
        offset += n;
    }
    Ok(jacobian)
}

/// The fallback of the batched pass: `(∂z/∂θ)ᵀ δₜ` task by task, stacked `[k, ...]` per
/// parameter (zeros for one the encoder does not use).
fn encoder_per_task(encoded: &Tensor, cotangents: &Tensor, params: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
    let inputs: Vec<&Tensor> = params.iter().collect();
    let mut rows: Vec<Vec<Tensor>> = params.iter().map(|_| Vec::new()).collect();
    for t in 0..cotangents.size()[0] {
        let root = encoded.f_mul(&cotangents.f_select(0, t)?)?.f_sum(encoded.kind())?;
        let grads = Tensor::f_run_backward(&[root], &inputs, true, false)?;
        for ((r, g), p) in rows.iter_mut().zip(grads).zip(params) {
            r.push(if g.defined() { g } else { p.f_zeros_like()? });
        }
    }
    rows.iter().map(|r| Ok(Some(Tensor::f_stack(r, 0)?))).collect()
}

/// The tensors of `grads`, with zeros (shaped like `like`) where undefined.
pub(crate) fn defined_or_zeros(grads: &[Tensor], like: &[Tensor]) -> Vec<Tensor> {
    grads
        .iter()
        .zip(like)
        .map(|(g, p)| if g.defined() { g.shallow_clone() } else { p.zeros_like() })
        .collect()
}

#[cfg(all(test, metl_batched_vjp))]
mod tests {
    use super::*;
    use metl_models::{
        conv4::Conv4Config,
        mlp::{Activation, MlpConfig},
        resnet12::ResNet12Config,
        segnet::SegNetConfig,
        Model,
    };
    use tch::{nn, Device, Kind};

    /// The batched pass through `encoder` on inputs `[4, ...shape]` in `f64` runs
    /// (`batches`) and agrees with the per-task passes, or is declined.
    fn check<M: Model>(what: &str, encoder: M, shape: &[i64], batches: bool) {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let params = encoder.init(&vs.root()).unwrap();
        vs.double();
        let mut size = vec![4];
        size.extend_from_slice(shape);
        let x = Tensor::randn(size.as_slice(), (Kind::Double, Device::Cpu));
        let z = encoder.forward(&params, &x, true);
        let mut c_shape = vec![3];
        c_shape.extend(z.size());
        let cotangents = Tensor::randn(c_shape.as_slice(), (Kind::Double, Device::Cpu));
        let inputs: Vec<&Tensor> = params.tensors().iter().collect();
        let batched = batched_vjp(&[&z], &[&cotangents], &inputs)
            .unwrap_or_else(|e| panic!("{what}: the batched pass fails: {e}"));
        let Some(batched) = batched else {
            assert!(!batches, "{what}: the batched pass was declined");
            return;
        };
        assert!(batches, "{what}: the batched pass ran");
        let looped = encoder_per_task(&z, &cotangents, params.tensors()).unwrap();
        for ((b, l), name) in batched.iter().zip(&looped).zip(params.names()) {
            let (b, l) = (b.as_ref().unwrap(), l.as_ref().unwrap());
            let err = f64::try_from((b - l).abs().max()).unwrap();
            let scale = f64::try_from(l.abs().max()).unwrap();
            assert!(err <= 1e-10 * scale.max(1e-300), "{what}, {name}: {err:e} of {scale:e}");
        }
    }

    #[test]
    fn tasks_in_chunks_give_the_same_jacobian() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let encoder = MlpConfig::new([3, 6, 5]).build().unwrap();
        let params = encoder.init(&vs.root()).unwrap();
        vs.double();
        let x = Tensor::randn([4, 3], (Kind::Double, Device::Cpu));
        let r = crate::Representation::detach(encoder.forward(&params, &x, true));
        let passes = (0..5)
            .map(|t| {
                let loss = (&r.leaf * (t as f64 - 2.0)).tanh().sum(Kind::Double);
                TaskPass::run(Some(&loss), Some(&r.leaf), &[], params.tensors()).unwrap()
            })
            .collect::<Vec<_>>();
        let whole = through_encoder(&params, &passes, &r.encoded, &r.leaf, BATCHED_ENTRIES).unwrap();
        // 2 tasks per pass (the representation has 20 entries): chunks of 2, 2 and 1.
        let chunked = through_encoder(&params, &passes, &r.encoded, &r.leaf, 40).unwrap();
        assert!(f64::try_from((&whole - &chunked).abs().max()).unwrap() < 1e-12);
        assert!(f64::try_from(whole.abs().max()).unwrap() > 0.0);
    }

    #[test]
    fn the_batched_pass_runs_for_mlps_and_is_declined_for_convolutions() {
        for activation in [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::Gelu] {
            let mlp = MlpConfig::new([5, 8, 7, 6]).with_activation(activation).build().unwrap();
            check(&format!("MLP {activation:?}"), mlp, &[5], true);
        }
        check("Conv4", Conv4Config::new(1).with_hidden(4).build().unwrap(), &[1, 16, 16], false);
        let resnet = ResNet12Config::default().with_channels([4, 4, 6, 6]);
        check("ResNet-12", ResNet12Config { in_channels: 1, ..resnet }.build().unwrap(), &[1, 16, 16], false);
        let segnet = SegNetConfig { in_channels: 1, widths: [2, 2, 3, 3, 3], ..SegNetConfig::default() };
        check("SegNet", segnet.build().unwrap(), &[1, 32, 32], false);
    }
}
