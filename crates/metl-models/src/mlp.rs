//! The multi-layer perceptron.

use crate::{
    error::{ModelError, Result},
    layers::{Layout, Linear},
    params::ParamsBuilder,
    staged::StagedModel,
    Mode, Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// An element-wise non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// The Gaussian error linear unit (exact, erf form).
    Gelu,
    /// `x` (no non-linearity).
    Identity,
}

impl Activation {
    /// Applies the non-linearity.
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Gelu => x.gelu("none"),
            Activation::Identity => x.shallow_clone(),
        }
    }
}

/// Configuration of an [`Mlp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Layer widths from input to output, e.g. `[1, 40, 40, 1]` for Finn et al.'s sinusoid
    /// network: three linear layers.
    pub widths: Vec<i64>,
    /// The non-linearity after every layer but the last.
    #[serde(default)]
    pub activation: Activation,
}

impl MlpConfig {
    /// An MLP with these widths (input first, output last) and ReLU.
    pub fn new(widths: impl Into<Vec<i64>>) -> Self {
        Self { widths: widths.into(), activation: Activation::Relu }
    }

    /// The same with another activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Validates the configuration and builds the model.
    pub fn build(&self) -> Result<Mlp> {
        if self.widths.len() < 2 {
            return Err(ModelError::invalid(
                "mlp.widths",
                format!("{:?}", self.widths),
                "needs at least an input and an output width",
            ));
        }
        if let Some(w) = self.widths.iter().find(|&&w| w < 1) {
            return Err(ModelError::invalid("mlp.widths", w, "every width must be >= 1"));
        }
        let layers = self
            .widths
            .windows(2)
            .enumerate()
            .map(|(i, pair)| Linear::new(format!("layers.{i}"), pair[0], pair[1]))
            .collect();
        Ok(Mlp { config: self.clone(), layers })
    }

    /// Builds the model and creates its parameters under `path`.
    pub fn init(&self, path: &nn::Path<'_>) -> Result<(Mlp, Params)> {
        let mlp = self.build()?;
        let params = mlp.init(path)?;
        Ok((mlp, params))
    }
}

/// A multi-layer perceptron: `Linear → activation → … → Linear`.
///
/// Parameters are named like a PyTorch module holding an `nn.ModuleList` called
/// `layers`: `layers.{i}.weight` `[out, in]` and `layers.{i}.bias` `[out]`, initialised
/// as `nn.Linear` does.
#[derive(Debug, Clone)]
pub struct Mlp {
    config: MlpConfig,
    layers: Vec<Linear>,
}

impl Mlp {
    /// The configuration.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// The number of linear layers.
    pub fn num_layers(&self) -> usize {
        self.config.widths.len() - 1
    }

    /// Layer `i` (and its activation unless it is the last) in `layout`.
    fn layer(&self, params: &Params, i: usize, h: &Tensor, layout: Layout) -> Tensor {
        let h = self.layers[i].forward(params, h, layout);
        if i + 1 < self.num_layers() {
            self.config.activation.apply(&h)
        } else {
            h
        }
    }
}

impl Model for Mlp {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        for layer in &self.layers {
            layer.init(&mut builder)?;
        }
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        (0..self.num_layers()).fold(x.shallow_clone(), |h, i| self.layer(params, i, &h, Layout::Single))
    }

    /// Batched matrix products: `baddbmm(b, h, Wᵀ)` per layer for all tasks at once.
    fn forward_tasks(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        let layout = Layout::Tasks(x.size()[0]);
        (0..self.num_layers()).fold(x.shallow_clone(), |h, i| self.layer(params, i, &h, layout))
    }

    fn forward_tasks_at_step(&self, params: &Params, x: &Tensor, train: bool, _step: usize) -> Tensor {
        self.forward_tasks(params, x, train)
    }
}

impl StagedModel for Mlp {
    fn num_stages(&self) -> usize {
        self.num_layers()
    }

    fn stage_shapes(&self, input_shape: &[i64]) -> Result<Vec<Vec<i64>>> {
        if input_shape != [self.config.widths[0]] {
            return Err(ModelError::invalid(
                "mlp input shape",
                format!("{input_shape:?}"),
                format!("must be [{}]", self.config.widths[0]),
            ));
        }
        Ok(self.config.widths[1..].iter().map(|&w| vec![w]).collect())
    }

    fn output_shape(&self, input_shape: &[i64]) -> Result<Vec<i64>> {
        Ok(self.stage_shapes(input_shape)?.pop().expect("at least one layer"))
    }

    fn forward_stage(&self, params: &Params, stage: usize, h: &Tensor, _mode: Mode) -> Tensor {
        self.layer(params, stage, h, Layout::Single)
    }

    fn finish(&self, h: &Tensor) -> Tensor {
        h.shallow_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::forward_tasks_looped;
    use tch::{Device, Kind};

    #[test]
    fn shapes_names_and_count_match_torch() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (mlp, params) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
        assert_eq!(params.names()[0], "layers.0.weight");
        assert_eq!(params["layers.2.weight"].size(), [1, 40]);
        // torch: sum(p.numel() for p in nn.Sequential(Linear(1,40), ReLU(), Linear(40,40),
        // ReLU(), Linear(40,1)).parameters()) == 1761
        assert_eq!(params.numel(), 1761);
        assert_eq!(vs.trainable_variables().len(), 6);
        let y = mlp.forward(&params, &Tensor::zeros([7, 1], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), [7, 1]);
    }

    #[test]
    fn task_batched_forward_matches_loop() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (mlp, params) =
            MlpConfig::new([3, 8, 2]).with_activation(Activation::Tanh).init(&vs.root()).unwrap();
        let stacked = params.map(|_, t| Tensor::stack(&[t * 1.0, t * 0.5, t * -2.0], 0));
        let x = Tensor::randn([3, 5, 3], (Kind::Float, Device::Cpu));
        let batched = mlp.forward_tasks(&stacked, &x, true);
        let looped = forward_tasks_looped(&mlp, &stacked, &x, true);
        assert!(batched.allclose(&looped, 1e-5, 1e-5, false));
    }

    #[test]
    fn bad_widths_are_rejected() {
        assert!(MlpConfig::new([4]).build().unwrap_err().to_string().contains("mlp.widths"));
        assert!(MlpConfig::new([4, 0, 1]).build().is_err());
    }
}
