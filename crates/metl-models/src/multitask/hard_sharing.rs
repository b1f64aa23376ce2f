//! Hard parameter sharing (Caruana, Machine Learning 1997, "Multitask Learning").

use super::{decoder_task, heads, MultiTaskModel};
use crate::{error::Result, Model, Params};
use tch::{nn, Tensor};

/// Hard parameter sharing: one shared encoder, one head per task, `ŷ_t = h_t(f(x))`.
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

impl<E: Model, H: Model> MultiTaskModel for HardSharing<E, H> {
    fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let params = self.encoder.init(&path.sub("encoder"))?.prefixed("encoder");
        params.merge(&heads::init(&self.heads, path)?)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        decoder_task(name)
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.encoder.forward(&params.sub("encoder"), x, train)
    }

    fn decode(&self, params: &Params, _x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        (0..self.heads.len()).map(|t| heads::forward(&self.heads, params, t, z, train)).collect()
    }

    fn buffers(&self) -> Params {
        let encoder = self.encoder.buffers().prefixed("encoder");
        encoder.merge(&heads::buffers(&self.heads)).expect("prefixes keep names apart")
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        self.encoder.load_buffers(&buffers.sub("encoder"))?;
        heads::load_buffers(&self.heads, buffers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{mlp::MlpConfig, multitask::split_by_task};
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
