//! TorchScript models (`tch::CModule`) as metl [`Model`]s, fast weights and second order
//! included.
//!
//! **What libtorch allows through tch.** A loaded TorchScript module keeps its parameters
//! as attributes. tch binds reading them (`CModule::named_parameters`, tensors sharing the
//! module's storage, which can be overwritten in place) but not replacing them by other
//! tensors (libtorch's C++ `Module::register_parameter`/`setattr`), and an in-place copy
//! has no autograd history: gradients would stop at the module's own tensors. Fast weights
//! φ(θ) therefore cannot be *put into* a loaded module. They can be *passed to* one: a
//! module whose `forward` takes the parameters as inputs runs any parameter set, and
//! libtorch's autograd differentiates through the TorchScript graph like through any other
//! operations (twice, for second-order MAML). [`ScriptModel`] runs such a module.
//!
//! **Exporting from PyTorch.** Wrap the model so that its parameters become inputs (the
//! given tensors stand in the parameters' places while it runs; `torch.func.functional_call`
//! does the same but refuses to run under `torch.jit.trace`) and trace it; the wrapper also
//! carries the initial values (`ScriptModel::init` copies them into your `VarStore`). This
//! is the wrapper metl's tests use (`crates/metl-models/tests/torchscript_export.py`):
//!
//! ```python
//! import torch
//!
//! class ParametersAsInputs(torch.nn.Module):
//!     """forward(x, *params): `model` on the given parameters, in named_parameters() order."""
//!     def __init__(self, model):
//!         super().__init__()
//!         self.model = model
//!         self.slots = []
//!         for name, _ in model.named_parameters():
//!             owner, _, attr = name.rpartition(".")
//!             self.slots.append((model.get_submodule(owner), attr))
//!
//!     def forward(self, x, *params):
//!         own = [module._parameters[attr] for module, attr in self.slots]
//!         try:
//!             for (module, attr), p in zip(self.slots, params):
//!                 module._parameters[attr] = p
//!             return self.model(x)
//!         finally:
//!             for (module, attr), p in zip(self.slots, own):
//!                 module._parameters[attr] = p
//!
//! params = [p for _, p in model.named_parameters()]
//! torch.jit.trace(ParametersAsInputs(model), (example_input, *params)).save("model.pt")
//! ```
//!
//! Then in Rust, `ScriptModel::load("model.pt", device)?`, `let theta = model.init(&vs.root())?`
//! and any meta-learner takes it; the parameter names are the module's (`model.0.weight`,
//! ...). A traced module records one mode: trace it in the mode you train in (`model.train()`
//! for batch statistics); `train` in [`Model::forward`] is not seen by it. Task-stacked
//! passes run one task after another.

use crate::{
    error::{ModelError, Result},
    params::ParamsBuilder,
    Model, Params,
};
use std::path::Path;
use tch::{nn, CModule, Device, Tensor};

/// A TorchScript module whose `forward(x, *params)` takes its parameters as inputs, as a
/// [`Model`]; see the [module documentation](self).
#[derive(Debug)]
pub struct ScriptModel {
    module: CModule,
    initial: Params,
}

impl ScriptModel {
    /// Loads a module saved by `torch.jit.save` onto `device`. Its parameters
    /// (`named_parameters()`, in that order) are the inputs its `forward` takes after `x`,
    /// and their values the initial parameters. Errors when the file cannot be loaded or
    /// the module has no parameters.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let path = path.as_ref();
        let err = |message: String| ModelError::Checkpoint { path: path.to_owned(), message };
        let module = CModule::load_on_device(path, device).map_err(|e| err(e.to_string()))?;
        let named = module.named_parameters().map_err(|e| err(e.to_string()))?;
        if named.is_empty() {
            return Err(err(
                "the TorchScript module has no parameters: export it with its parameters as inputs of \
                 forward (see metl_models::torchscript)"
                    .into(),
            ));
        }
        let initial = Params::from_named(named.into_iter().map(|(n, t)| (n, t.detach())).collect())?;
        Ok(Self { module, initial })
    }

    /// The parameter values stored in the module (detached), by name.
    pub fn initial_params(&self) -> &Params {
        &self.initial
    }

    /// `forward(x, *params)` with the tensors of `params` in the module's parameter order;
    /// errors when a name is missing or TorchScript rejects the inputs (shapes, devices).
    pub fn f_forward(&self, params: &Params, x: &Tensor) -> Result<Tensor> {
        let mut inputs = Vec::with_capacity(self.initial.len() + 1);
        inputs.push(x.shallow_clone());
        for name in self.initial.names() {
            let t = params.get(name).ok_or_else(|| ModelError::MissingParam {
                name: name.clone(),
                context: format!(
                    "the parameters given to ScriptModel::forward ([{}])",
                    params.names().join(", ")
                ),
            })?;
            inputs.push(t.shallow_clone());
        }
        Ok(self.module.forward_ts(&inputs)?)
    }
}

impl Model for ScriptModel {
    /// Registers copies of the module's parameter values under `path` (on its device and
    /// kind), named as in the module.
    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let mut builder = ParamsBuilder::new(path);
        for (name, value) in self.initial.iter() {
            builder.var_copy(name, value)?;
        }
        builder.build()
    }

    /// # Panics
    /// Where [`ScriptModel::f_forward`] errors (a missing parameter, inputs TorchScript
    /// rejects).
    fn forward(&self, params: &Params, x: &Tensor, _train: bool) -> Tensor {
        self.f_forward(params, x).unwrap_or_else(|e| panic!("{e}"))
    }
}
