//! Classifier heads on a feature vector: linear and cosine.

use crate::{
    error::{ModelError, Result},
    layers::{Layout, Linear},
    params::{torch_default_init, ParamsBuilder},
    Model, Params,
};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// A linear classifier `logits = x Wᵀ + b`, as `nn.Linear(in_features, classes)`: parameters
/// `weight` `[K, F]` and `bias` `[K]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearHead {
    linear: Linear,
}

impl LinearHead {
    /// A head from `in_features` features to `classes` logits.
    pub fn new(in_features: i64, classes: i64) -> Result<Self> {
        check_sizes("linear_head", in_features, classes)?;
        Ok(Self { linear: Linear::new("", in_features, classes) })
    }
}

fn check_sizes(what: &'static str, in_features: i64, classes: i64) -> Result<()> {
    if in_features < 1 {
        return Err(ModelError::invalid(what, format!("in_features = {in_features}"), "must be >= 1"));
    }
    if classes < 1 {
        return Err(ModelError::invalid(what, format!("classes = {classes}"), "must be >= 1"));
    }
    Ok(())
}

impl Model for LinearHead {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        self.linear.init(&mut builder)?;
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        self.linear.forward(params, x, Layout::Single)
    }

    /// One batched matrix product `baddbmm(b, x, Wᵀ)`.
    fn forward_tasks(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        self.linear.forward(params, x, Layout::Tasks(x.size()[0]))
    }

    fn forward_tasks_at_step(&self, params: &Params, x: &Tensor, train: bool, _step: usize) -> Tensor {
        self.forward_tasks(params, x, train)
    }
}

/// Configuration of a [`CosineHead`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CosineHeadConfig {
    /// The scale `s` of the cosine similarities; `None` (the default) takes Baseline++'s
    /// rule: 2 for up to 200 classes, else 10.
    pub scale: Option<f64>,
    /// Learn `s` as the parameter `scale` (Gidaris & Komodakis 2018) instead of fixing it
    /// (default false).
    pub learn_scale: bool,
}

/// A cosine-similarity classifier (Chen et al., ICLR 2019, "A Closer Look at Few-shot
/// Classification" (Baseline++); Gidaris & Komodakis, CVPR 2018, "Dynamic Few-Shot Visual
/// Learning without Forgetting"):
///
/// ```text
/// logits_k = s · ⟨x / ‖x‖, w_k / ‖w_k‖⟩
/// ```
///
/// Parameters: `weight` `[K, F]` (initialised as `nn.Linear`'s), and `scale` `[]` when it is
/// learned. Norms are clamped below at 1e-12, as `F.normalize` does.
#[derive(Debug, Clone, PartialEq)]
pub struct CosineHead {
    in_features: i64,
    classes: i64,
    scale: f64,
    learn_scale: bool,
}

impl CosineHead {
    /// A head from `in_features` features to `classes` logits.
    pub fn new(in_features: i64, classes: i64, config: CosineHeadConfig) -> Result<Self> {
        check_sizes("cosine_head", in_features, classes)?;
        let scale = config.scale.unwrap_or(if classes <= 200 { 2.0 } else { 10.0 });
        if !(scale.is_finite() && scale > 0.0) {
            return Err(ModelError::invalid("cosine_head.scale", scale, "must be > 0"));
        }
        Ok(Self { in_features, classes, scale, learn_scale: config.learn_scale })
    }

    /// The (initial) scale `s`.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    fn normalize(x: &Tensor) -> Tensor {
        x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12)
    }

    fn scale_of<'a>(&self, params: &'a Params) -> Option<&'a Tensor> {
        self.learn_scale.then(|| &params["scale"])
    }
}

impl Model for CosineHead {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        builder.var("weight", &[self.classes, self.in_features], torch_default_init(self.in_features))?;
        if self.learn_scale {
            builder.var("scale", &[], nn::Init::Const(self.scale))?;
        }
        builder.build()
    }

    fn forward(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        let cosine = Self::normalize(x).matmul(&Self::normalize(&params["weight"]).transpose(0, 1));
        match self.scale_of(params) {
            Some(s) => cosine * s,
            None => cosine * self.scale,
        }
    }

    fn forward_tasks(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        let cosine = Self::normalize(x).bmm(&Self::normalize(&params["weight"]).transpose(1, 2));
        match self.scale_of(params) {
            Some(s) => cosine * s.view([-1, 1, 1]),
            None => cosine * self.scale,
        }
    }

    fn forward_tasks_at_step(&self, params: &Params, x: &Tensor, train: bool, _step: usize) -> Tensor {
        self.forward_tasks(params, x, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn cosine_logits_are_scaled_cosines() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = CosineHead::new(3, 2, CosineHeadConfig::default()).unwrap();
        assert_eq!(head.scale(), 2.0);
        let params = head.init(&vs.root()).unwrap();
        tch::no_grad(|| {
            params["weight"]
                .shallow_clone()
                .copy_(&Tensor::from_slice2(&[[1.0f32, 0.0, 0.0], [0.0, 2.0, 0.0]]))
        });
        let x = Tensor::from_slice2(&[[3.0f32, 0.0, 4.0]]);
        let y = head.forward(&params, &x, true);
        let expected = Tensor::from_slice2(&[[2.0f32 * 0.6, 0.0]]);
        assert!(y.allclose(&expected, 1e-6, 1e-6, false), "{y}");
        assert!(CosineHead::new(3, 2, CosineHeadConfig { scale: Some(-1.0), learn_scale: false }).is_err());
    }

    #[test]
    fn linear_head_is_nn_linear() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = LinearHead::new(64, 5).unwrap();
        let params = head.init(&vs.root()).unwrap();
        assert_eq!(params.names(), ["weight", "bias"]);
        assert_eq!(params.numel(), 325);
        let x = Tensor::randn([4, 64], (Kind::Float, Device::Cpu));
        assert_eq!(head.forward(&params, &x, false).size(), [4, 5]);
        assert!(LinearHead::new(0, 5).unwrap_err().to_string().contains("linear_head"));
    }
}
