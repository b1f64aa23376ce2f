//! [`MultiTaskModel`]: networks with parameters shared by all tasks and parameters owned
//! by one task, and hard parameter sharing ([`HardSharing`]).

use crate::{error::Result, Model, Params};
use tch::{nn, Tensor};

/// A network that maps one input to `T` task outputs.
///
/// Its parameters split into *shared* ones ([`MultiTaskModel::task_of`] is `None`) and
/// *task-specific* ones. The forward pass splits into [`MultiTaskModel::encode`] (the shared
/// representation `z`) and [`MultiTaskModel::decode`] (task outputs from `z`), so that
/// representation-level gradient methods (MGDA-UB, Aligned-MTL-UB) can differentiate the
/// task losses with respect to `z` instead of the shared parameters.
pub trait MultiTaskModel {
    /// The number of tasks `T`.
    fn num_tasks(&self) -> usize;

    /// Creates fresh parameters under `path` (see [`Model::init`]).
    fn init(&self, path: &nn::Path<'_>) -> Result<Params>;

    /// The task owning parameter `name`, or `None` for a shared parameter.
    fn task_of(&self, name: &str) -> Option<usize>;

    /// Whether [`MultiTaskModel::encode`] is a representation shared by all tasks (false
    /// for architectures whose task paths interleave throughout, such as cross-stitch).
    fn has_shared_representation(&self) -> bool {
        true
    }

    /// The shared representation `z` of a batch `x`.
    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor;

    /// The `T` task outputs from the representation `z` (and the input `x`, which gates of
    /// mixture-of-experts models look at).
    fn decode(&self, params: &Params, x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor>;

    /// The `T` task outputs of a batch `x`.
    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Vec<Tensor> {
        let z = self.encode(params, x, train);
        self.decode(params, x, &z, train)
    }
}

/// Splits parameters into the shared ones and those of each task.
pub fn split_by_task<M: MultiTaskModel + ?Sized>(model: &M, params: &Params) -> (Params, Vec<Params>) {
    let shared = params.filter(|n| model.task_of(n).is_none());
    let tasks = (0..model.num_tasks()).map(|t| params.filter(|n| model.task_of(n) == Some(t))).collect();
    (shared, tasks)
}

/// Hard parameter sharing (Caruana 1997): one shared encoder, one head per task,
/// `ŷ_t = h_t(f(x))`.
///
/// Parameters are named `encoder.*` and `decoders.{t}.*`, as LibMTL's modules are.
#[derive(Debug, Clone)]
pub struct HardSharing<E, H> {
    encoder: E,
    heads: Vec<H>,
}

impl<E: Model, H: Model> HardSharing<E, H> {
    /// A shared `encoder` with one head per task.
    pub fn new(encoder: E, heads: Vec<H>) -> Self {
        Self { encoder, heads }
    }

    /// The shared encoder.
    pub fn encoder(&self) -> &E {
        &self.encoder
    }

    /// The task heads.
    pub fn heads(&self) -> &[H] {
        &self.heads
    }
}

/// The task index of a name `decoders.{t}.…`.
pub fn decoder_task(name: &str) -> Option<usize> {
    name.strip_prefix("decoders.")?.split('.').next()?.parse().ok()
}

impl<E: Model, H: Model> MultiTaskModel for HardSharing<E, H> {
    fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut params = self.encoder.init(&path.sub("encoder"))?.prefixed("encoder");
        for (t, head) in self.heads.iter().enumerate() {
            let head_params = head.init(&path.sub("decoders").sub(t))?.prefixed(&format!("decoders.{t}"));
            params = params.merge(&head_params)?;
        }
        Ok(params)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name)
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.encoder.forward(&params.sub("encoder"), x, train)
    }

    fn decode(&self, params: &Params, _x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        self.heads
            .iter()
            .enumerate()
            .map(|(t, head)| head.forward(&params.sub(&format!("decoders.{t}")), z, train))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::MlpConfig;
    use tch::{Device, Kind};

    #[test]
    fn shared_and_task_parameters_are_separated() {
        let vs = nn::VarStore::new(Device::Cpu);
        let encoder = MlpConfig::new([4, 8, 8]).build().unwrap();
        let heads = vec![MlpConfig::new([8, 1]).build().unwrap(), MlpConfig::new([8, 3]).build().unwrap()];
        let model = HardSharing::new(encoder, heads);
        let params = model.init(&vs.root()).unwrap();
        assert_eq!(params.names()[0], "encoder.layers.0.weight");
        let (shared, tasks) = split_by_task(&model, &params);
        assert_eq!(shared.len(), 4);
        assert_eq!(tasks[1].names(), ["decoders.1.layers.0.weight", "decoders.1.layers.0.bias"]);
        assert_eq!(vs.trainable_variables().len(), params.len());
        let x = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let out = model.forward(&params, &x, true);
        assert_eq!((out[0].size(), out[1].size()), (vec![5, 1], vec![5, 3]));
    }
}
