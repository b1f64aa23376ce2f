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
///
/// A task whose cotangent is exactly zero (no sample of it in the batch, e.g. an alphabet
/// absent from a mixed batch of Omniglot-50) is not sent through the encoder: the pass is
/// linear in `δₜ`, so its encoder part is exactly zero. With a per-task traversal that is one
/// encoder backward pass saved per absent task.
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
    let reached = encoded.requires_grad() && passes.iter().any(|p| p.leaf.is_some());
    let cotangents = if reached { Some(leaf_rows(passes, leaf)?.f_to_kind(encoded.kind())?) } else { None };
    // The tasks with a nonzero cotangent (NaNs count as nonzero and travel on).
    let live: Vec<i64> = match &cotangents {
        Some(c) => {
            let nonzero = Vec::<bool>::try_from(c.f_reshape([k, -1])?.f_ne(0.0)?.f_any_dim(1, false)?)?;
            (0..k).filter(|&t| nonzero[t as usize]).collect()
        }
        None => Vec::new(),
    };
    // Every entry of a live row is written below; the others stay zero.
    let options = (shared.kind(), shared.device());
    let jacobian = if live.len() as i64 == k {
        Tensor::f_empty([k, width], options)?
    } else {
        Tensor::f_zeros([k, width], options)?
    };
    let chunk = (entries / (encoded.numel() as i64).max(1)).clamp(1, k) as usize;
    if let Some(c) = &cotangents {
        for tasks in live.chunks(chunk) {
            let rows = Tensor::f_from_slice(tasks)?.f_to(c.device())?;
            let c = if tasks.len() as i64 == k { c.shallow_clone() } else { c.f_index_select(0, &rows)? };
            let encoder = match batched_vjp(&[encoded], &[&c], &inputs) {
                Ok(Some(grads)) => grads,
                Ok(None) | Err(_) => encoder_per_task(encoded, &c, params)?,
            };
            let rows = rows.f_to(jacobian.device())?;
            let mut offset = 0;
            for (p, from_encoder) in params.iter().zip(encoder) {
                let n = p.numel() as i64;
                let mut block = jacobian.f_narrow(1, offset, n)?;
                let _ = match from_encoder {
                    Some(g) => block.f_index_copy_(
                        0,
                        &rows,
                        &g.f_reshape([tasks.len() as i64, n])?.f_to_kind(block.kind())?,
                    )?,
                    None => block.f_index_fill_(0, &rows, 0.0)?,
                };
                offset += n;
            }
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
    fn tasks_absent_from_the_batch_get_zero_rows_and_the_others_their_gradients() {
        // Task t's loss reads sample t only; tasks 4 and 5 have no sample in the batch (their
        // masked losses are zero, and so are their cotangents). Conv4 (per-task passes) and
        // an MLP (batched pass), each against one backward pass per loss through the
        // undetached network.
        fn loss(z: &Tensor, t: i64) -> Tensor {
            let mask = Tensor::arange(4, (Kind::Double, Device::Cpu)).eq(t as f64).to_kind(Kind::Double);
            let per_sample = z.flatten(1, -1).tanh().sum_dim_intlist(1, false, Kind::Double) * (t + 1) as f64;
            (per_sample * mask).sum(Kind::Double)
        }
        fn check<M: Model>(what: &str, encoder: M, shape: &[i64]) {
            let mut vs = nn::VarStore::new(Device::Cpu);
            let params = encoder.init(&vs.root()).unwrap();
            vs.double();
            let mut size = vec![4];
            size.extend_from_slice(shape);
            let x = Tensor::linspace(-1.0, 1.0, size.iter().product::<i64>(), (Kind::Double, Device::Cpu))
                .reshape(size.as_slice());
            let r = crate::Representation::detach(encoder.forward(&params, &x, true));
            let tasks = [0, 4, 1, 5, 3, 2];
            let passes = tasks
                .iter()
                .map(|&t| {
                    TaskPass::run(Some(&loss(&r.leaf, t)), Some(&r.leaf), &[], params.tensors()).unwrap()
                })
                .collect::<Vec<_>>();
            let jacobian = through_encoder(&params, &passes, &r.encoded, &r.leaf, BATCHED_ENTRIES).unwrap();
            let inputs: Vec<&Tensor> = params.tensors().iter().collect();
            for (row, &t) in tasks.iter().enumerate() {
                let grads = Tensor::run_backward(&[loss(&r.encoded, t)], &inputs, true, false);
                let flat: Vec<Tensor> =
                    defined_or_zeros(&grads, params.tensors()).iter().map(|g| g.flatten(0, -1)).collect();
                let expected = Tensor::cat(&flat, 0);
                let got = jacobian.get(row as i64);
                let scale = f64::try_from(expected.abs().max()).unwrap();
                let err = f64::try_from((&got - &expected).abs().max()).unwrap();
                if t >= 4 {
                    assert_eq!(f64::try_from(got.abs().max()).unwrap(), 0.0, "{what}: task {t} is absent");
                } else {
                    assert!(scale > 0.0 && err <= 1e-10 * scale, "{what}, task {t}: {err:e} of {scale:e}");
                }
            }
        }
        check("Conv4", Conv4Config::new(1).with_hidden(4).build().unwrap(), &[1, 16, 16]);
        check("MLP", MlpConfig::new([5, 8, 6]).build().unwrap(), &[5]);
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
