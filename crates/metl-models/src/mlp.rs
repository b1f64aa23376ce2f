//! The multi-layer perceptron.

use crate::{
    error::{ModelError, Result},
    params::{torch_default_init, ParamsBuilder},
    Model, Params,
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
        Ok(Mlp { config: self.clone() })
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

    fn layer(params: &Params, i: usize) -> (&Tensor, &Tensor) {
        (&params[format!("layers.{i}.weight").as_str()], &params[format!("layers.{i}.bias").as_str()])
    }
}

impl Model for Mlp {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        for (i, pair) in self.config.widths.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let init = torch_default_init(fan_in);
            builder.var(&format!("layers.{i}.weight"), &[fan_out, fan_in], init)?;
            builder.var(&format!("layers.{i}.bias"), &[fan_out], init)?;
        }
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        let last = self.num_layers() - 1;
        let mut h = x.shallow_clone();
        for i in 0..=last {
            let (w, b) = Self::layer(params, i);
            h = h.linear(w, Some(b));
            if i < last {
                h = self.config.activation.apply(&h);
            }
        }
        h
    }

    /// Batched matrix products: `baddbmm(b, h, Wᵀ)` per layer for all tasks at once.
    fn forward_tasks(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        let last = self.num_layers() - 1;
        let mut h = x.shallow_clone();
        for i in 0..=last {
            let (w, b) = Self::layer(params, i);
            h = b.unsqueeze(1).baddbmm(&h, &w.transpose(1, 2), 1.0, 1.0);
            if i < last {
                h = self.config.activation.apply(&h);
            }
        }
        h
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
