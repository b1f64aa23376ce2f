//! [`Classifier`]: a backbone followed by a head, as one [`Model`].

use crate::{error::Result, Model, Params};
use tch::{nn, Tensor};

/// `head(backbone(x))` — e.g. Conv4 and a linear head, the network MAML adapts.
///
/// Parameters and buffers are the backbone's under `backbone.` and the head's under `head.`,
/// as a PyTorch module with attributes `backbone` and `head` names them
/// (`backbone.blocks.0.conv.weight`, ..., `head.weight`, `head.bias`).
#[derive(Debug, Clone)]
pub struct Classifier<B, H> {
    backbone: B,
    head: H,
}

impl<B: Model, H: Model> Classifier<B, H> {
    /// `head` on top of `backbone`.
    pub fn new(backbone: B, head: H) -> Self {
        Self { backbone, head }
    }

    /// The backbone.
    pub fn backbone(&self) -> &B {
        &self.backbone
    }

    /// The head.
    pub fn head(&self) -> &H {
        &self.head
    }

    /// The backbone's and the head's parameters of the whole network's `params`.
    pub fn split_params(&self, params: &Params) -> (Params, Params) {
        (params.sub("backbone"), params.sub("head"))
    }
}

impl<B: Model, H: Model> Model for Classifier<B, H> {
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let backbone = self.backbone.init(&path.sub("backbone"))?.prefixed("backbone");
        let head = self.head.init(&path.sub("head"))?.prefixed("head");
        backbone.merge(&head)
    }

    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        let (b, h) = self.split_params(params);
        self.head.forward(&h, &self.backbone.forward(&b, x, train), train)
    }

    fn forward_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        let (b, h) = self.split_params(params);
        self.head.forward_at_step(&h, &self.backbone.forward_at_step(&b, x, train, step), train, step)
    }

    fn forward_tasks(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        let (b, h) = self.split_params(params);
        self.head.forward_tasks(&h, &self.backbone.forward_tasks(&b, x, train), train)
    }

    fn forward_tasks_at_step(&self, params: &Params, x: &Tensor, train: bool, step: usize) -> Tensor {
        let (b, h) = self.split_params(params);
        let z = self.backbone.forward_tasks_at_step(&b, x, train, step);
        self.head.forward_tasks_at_step(&h, &z, train, step)
    }

    fn buffers(&self) -> Params {
        let backbone = self.backbone.buffers().prefixed("backbone");
        backbone.merge(&self.head.buffers().prefixed("head")).expect("prefixes keep names apart")
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        self.backbone.load_buffers(&buffers.sub("backbone"))?;
        self.head.load_buffers(&buffers.sub("head"))
    }
}
