//! The metl-models workloads: one meta-batch through a network, with a per-task loop (one
//! forward and one backward pass per task, as PyTorch code without `vmap` runs it) or
//! task-batched (`Model::forward_tasks`: batched matrix products, grouped convolutions, one
//! backward pass).
//!
//! - [`MetaBatch::mlp_sinusoid`]: Finn et al.'s sinusoid network, MLP 1-40-40-1, 25 tasks,
//!   K = 10 support and 10 query points.
//! - [`MetaBatch::conv4_omniglot`]: Conv4 (batch statistics) + linear head, Omniglot 5-way
//!   1-shot 28×28, 15 queries per class, 32 tasks.
//! - [`MetaBatch::resnet12_mini_imagenet`]: ResNet-12 (64-160-320-640, batch statistics) +
//!   linear head, 5-way 1-shot 84×84, one query per class.
//!
//! Inputs are random: these workloads measure computation, not data.

use metl_models::{
    conv4::Conv4Config, head::LinearHead, mlp::MlpConfig, resnet12::ResNet12Config, BatchNormConfig,
    Classifier, Model, Params, TaskLoss,
};
use tch::{nn, Device, Kind, Tensor};

/// Which examples of each task a pass runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// The support set (`N·K` examples per task).
    Support,
    /// The query set.
    Query,
}

/// How the tasks of a meta-batch are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// One forward and one backward pass per task.
    Loop,
    /// One task-batched forward pass, one backward pass.
    Batched,
}

/// A network with meta-parameters θ and one meta-batch of tasks on a device.
pub struct MetaBatch {
    /// The workload's name.
    pub name: &'static str,
    model: Box<dyn Model>,
    theta: Params,
    _vs: nn::VarStore,
    support: (Tensor, Tensor),
    query: (Tensor, Tensor),
    loss: TaskLoss,
    inner_lr: f64,
}

impl std::fmt::Debug for MetaBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaBatch").field("name", &self.name).field("tasks", &self.tasks()).finish()
    }
}

fn labels(tasks: i64, ways: i64, per_class: i64, device: Device) -> Tensor {
    Tensor::arange(ways, (Kind::Int64, device))
        .repeat_interleave_self_int(per_class, None, None)
        .repeat([tasks, 1])
}

impl MetaBatch {
    /// MLP 1-40-40-1 on sinusoids: 25 tasks, 10 support and 10 query points each.
    pub fn mlp_sinusoid(device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).expect("valid MLP");
        let x = |n| Tensor::rand([25, n, 1], (Kind::Float, device)) * 10.0 - 5.0;
        let (xs, xq) = (x(10), x(10));
        let (ys, yq) = (xs.sin(), xq.sin());
        Self {
            name: "mlp_sinusoid",
            model: Box::new(mlp),
            theta,
            _vs: vs,
            support: (xs, ys),
            query: (xq, yq),
            loss: TaskLoss::Mse,
            inner_lr: 0.01,
        }
    }

    /// Conv4 + linear head, Omniglot 5-way 1-shot 28×28 with 15 queries per class.
    pub fn conv4_omniglot(device: Device, tasks: i64) -> Self {
        let backbone =
            Conv4Config::new(1).with_batch_norm(BatchNormConfig::batch()).build().expect("valid Conv4");
        let net = Classifier::new(backbone, LinearHead::new(64, 5).expect("valid head"));
        Self::five_way("conv4_omniglot", Box::new(net), device, tasks, [1, 28, 28], 15, 0.4)
    }

    /// ResNet-12 + linear head, 5-way 1-shot 84×84 with one query per class.
    pub fn resnet12_mini_imagenet(device: Device, tasks: i64) -> Self {
        let backbone = ResNet12Config::default()
            .with_batch_norm(BatchNormConfig::batch())
            .build()
            .expect("valid ResNet-12");
        let net = Classifier::new(backbone, LinearHead::new(640, 5).expect("valid head"));
        Self::five_way("resnet12_mini_imagenet", Box::new(net), device, tasks, [3, 84, 84], 1, 0.01)
    }

    /// A 5-way 1-shot classification meta-batch of random `image` inputs.
    fn five_way(
        name: &'static str,
        model: Box<dyn Model>,
        device: Device,
        tasks: i64,
        image: [i64; 3],
        queries_per_class: i64,
        inner_lr: f64,
    ) -> Self {
        let vs = nn::VarStore::new(device);
        let theta = model.init(&vs.root()).expect("fresh parameters");
        let images = |n| Tensor::rand([tasks, n, image[0], image[1], image[2]], (Kind::Float, device));
        Self {
            name,
            model,
            theta,
            _vs: vs,
            support: (images(5), labels(tasks, 5, 1, device)),
            query: (images(5 * queries_per_class), labels(tasks, 5, queries_per_class, device)),
            loss: TaskLoss::CrossEntropy,
            inner_lr,
        }
    }

    /// The number of tasks.
    pub fn tasks(&self) -> usize {
        self.support.0.size()[0] as usize
    }

    /// The same meta-batch with parameters and inputs in `kind` (bf16, fp16 on CUDA).
    pub fn to_kind(&mut self, kind: Kind) {
        self.theta = self.theta.detach().to_kind(kind).detached_leaves();
        self.support.0 = self.support.0.to_kind(kind);
        self.query.0 = self.query.0.to_kind(kind);
        if self.loss == TaskLoss::Mse {
            self.support.1 = self.support.1.to_kind(kind);
            self.query.1 = self.query.1.to_kind(kind);
        }
    }

    fn set(&self, set: Set) -> &(Tensor, Tensor) {
        match set {
            Set::Support => &self.support,
            Set::Query => &self.query,
        }
    }

    /// The summed task losses and their gradient with respect to θ, by `path`; returns the
    /// loss.
    pub fn forward_backward(&self, set: Set, path: Path) -> f64 {
        let (x, y) = self.set(set);
        match path {
            Path::Batched => {
                let prediction = self.model.forward_tasks(&self.theta.expand_tasks(self.tasks()), x, true);
                let loss = self.loss.per_task(&prediction, y).sum(Kind::Float);
                let _ = self.theta.grads(&loss, false).expect("differentiable");
                loss.double_value(&[])
            }
            Path::Loop => (0..self.tasks() as i64)
                .map(|t| {
                    let prediction = self.model.forward(&self.theta, &x.get(t), true);
                    let loss = self.loss.loss(&prediction, &y.get(t));
                    let _ = self.theta.grads(&loss, false).expect("differentiable");
                    loss.double_value(&[])
                })
                .sum(),
        }
    }

    /// One MAML meta-gradient: an inner SGD step on each task's support set (differentiable
    /// with `second_order`), the query losses at the adapted weights, their gradient with
    /// respect to θ; returns the mean query loss.
    pub fn maml_step(&self, path: Path, second_order: bool) -> f64 {
        let ((xs, ys), (xq, yq)) = (&self.support, &self.query);
        let tasks = self.tasks();
        match path {
            Path::Batched => {
                let fast = self.theta.expand_tasks(tasks);
                let inner =
                    self.loss.per_task(&self.model.forward_tasks(&fast, xs, true), ys).sum(Kind::Float);
                let fast =
                    fast.sgd(&fast.grads(&inner, second_order).expect("differentiable"), self.inner_lr);
                let fast = fast.expect("same names");
                let outer =
                    self.loss.per_task(&self.model.forward_tasks(&fast, xq, true), yq).mean(Kind::Float);
                let _ = self.theta.grads(&outer, false).expect("differentiable");
                outer.double_value(&[])
            }
            Path::Loop => {
                let mut total = 0.0;
                for t in 0..tasks as i64 {
                    let inner =
                        self.loss.loss(&self.model.forward(&self.theta, &xs.get(t), true), &ys.get(t));
                    let grads = self.theta.grads(&inner, second_order).expect("differentiable");
                    let fast = self.theta.sgd(&grads, self.inner_lr).expect("same names");
                    let outer = self.loss.loss(&self.model.forward(&fast, &xq.get(t), true), &yq.get(t))
                        / tasks as f64;
                    let _ = self.theta.grads(&outer, false).expect("differentiable");
                    total += outer.double_value(&[]);
                }
                total
            }
        }
    }
}
