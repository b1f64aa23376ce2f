//! Your own `tch::nn` module as a metl [`Model`]: run the network you wrote on fast weights.
//!
//! MAML and its relatives evaluate one network at many parameter sets — the slow weights θ,
//! fast weights φ = θ − α∇L(θ) that are functions of θ (so that the meta-gradient flows
//! through them), `T` task-specific sets at once. metl's own models take their parameters
//! as an argument ([`Model::forward`]); a module written with `tch::nn` holds its tensors
//! inside its layers instead. [`Functional`] bridges the two the way PyTorch's
//! `torch.func.functional_call` and `higher` do: for each forward pass it puts the given
//! tensors into the module's parameter slots, runs *your* `forward_t` unchanged, and puts
//! the module's own tensors back. Autograd sees the given tensors, so gradients — second
//! order included — flow into them.
//!
//! All a module needs is [`ParamSlots`]: mutable access to its parameter tensors, in a fixed
//! order. tch's layers (`nn::Linear`, `nn::Conv1D/2D/3D`, `nn::BatchNorm`, `nn::LayerNorm`,
//! `nn::GroupNorm`, `nn::Embedding`) implement it; a struct of layers lists its fields
//! with [`param_slots!`](crate::param_slots). [`Functional::new`] names every slot after the
//! [`nn::VarStore`] variable it holds (`net.fc1.weight`, ...), so checkpoints, ANIL's
//! head prefix and the optimizers see ordinary metl [`Params`].
//!
//! ```
//! use metl_models::{functional::Functional, param_slots, Model};
//! use tch::{nn, nn::Module, Device, Kind, Tensor};
//!
//! // A network as any tch user writes it.
//! #[derive(Debug)]
//! struct Net {
//!     fc1: nn::Linear,
//!     fc2: nn::Linear,
//! }
//!
//! impl Net {
//!     fn new(p: &nn::Path<'_>) -> Self {
//!         Net { fc1: nn::linear(p / "fc1", 1, 40, Default::default()), fc2: nn::linear(p / "fc2", 40, 1, Default::default()) }
//!     }
//! }
//!
//! impl nn::Module for Net {
//!     fn forward(&self, x: &Tensor) -> Tensor {
//!         x.apply(&self.fc1).relu().apply(&self.fc2)
//!     }
//! }
//!
//! // The one addition metl needs: where the parameters are.
//! impl metl_models::functional::ParamSlots for Net {
//!     fn param_slots(&mut self) -> Vec<&mut Tensor> {
//!         param_slots!(self.fc1, self.fc2)
//!     }
//! }
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let model = Functional::new(Net::new(&(vs.root() / "net")), &vs).unwrap();
//! let theta = model.params();
//! assert_eq!(theta.names(), ["net.fc1.weight", "net.fc1.bias", "net.fc2.weight", "net.fc2.bias"]);
//!
//! // One differentiable SGD step, then the same network on the fast weights.
//! let x = Tensor::linspace(-5.0, 5.0, 10, (Kind::Float, Device::Cpu)).unsqueeze(1);
//! let loss = model.forward(&theta, &x, true).mse_loss(&x.sin(), tch::Reduction::Mean);
//! let phi = theta.sgd(&theta.grads(&loss, true).unwrap(), 0.01).unwrap();
//! let query = model.forward(&phi, &x, true).mse_loss(&x.sin(), tch::Reduction::Mean);
//! // The meta-gradient reaches θ through φ (second order).
//! let meta_grad = theta.grads(&query, false).unwrap();
//! assert!(meta_grad.flatten().abs().sum(Kind::Float).double_value(&[]) > 0.0);
//! ```
//!
//! Cost: a swap is a handful of handle copies per parameter tensor, nothing on the device.
//! Task-stacked forward passes ([`Model::forward_tasks`]) run the tasks one after another
//! (metl's own models batch them into single kernels). Non-trainable state stays inside the
//! module: tch's `nn::BatchNorm` updates its running averages in training-mode passes as
//! usual, but they are not metl buffers, so metl checkpoints hold the parameters only (save
//! the `VarStore` for the rest).
//!
//! **TorchScript.** A `tch::CModule` cannot be adapted this way: tch's bindings give its
//! parameters as tensors sharing storage (which can be overwritten in place, a first-order
//! swap at best) but no way to replace a parameter by another tensor with autograd history,
//! which fast weights need; libtorch's C++ `torch::jit::Module::register_parameter` could,
//! but tch does not bind it. A TorchScript module exported with its parameters as inputs
//! runs as a [`crate::torchscript::ScriptModel`] instead.

use crate::{
    error::{ModelError, Result},
    Model, Params,
};
use std::sync::{Mutex, MutexGuard};
use tch::{nn, Tensor};

/// A module whose parameter tensors can be reached, mutably and always in the same order.
///
/// Implemented by tch's layers; a module made of layers lists them with
/// [`param_slots!`](crate::param_slots):
///
/// ```
/// # use metl_models::{functional::ParamSlots, param_slots};
/// # use tch::{nn, Tensor};
/// struct Encoder { conv: nn::Conv2D, norm: nn::BatchNorm, heads: Vec<nn::Linear> }
///
/// impl ParamSlots for Encoder {
///     fn param_slots(&mut self) -> Vec<&mut Tensor> {
///         param_slots!(self.conv, self.norm, self.heads)
///     }
/// }
/// ```
pub trait ParamSlots {
    /// Every trainable tensor of the module, in a fixed order.
    fn param_slots(&mut self) -> Vec<&mut Tensor>;
}

/// The parameter slots of several [`ParamSlots`] fields, concatenated:
/// `param_slots!(self.fc1, self.fc2)`.
#[macro_export]
macro_rules! param_slots {
    ($($field:expr),+ $(,)?) => {{
        let mut slots: ::std::vec::Vec<&mut ::tch::Tensor> = ::std::vec::Vec::new();
        $(slots.extend($crate::functional::ParamSlots::param_slots(&mut $field));)+
        slots
    }};
}

fn weight_and_bias<'a>(ws: &'a mut Tensor, bs: Option<&'a mut Tensor>) -> Vec<&'a mut Tensor> {
    std::iter::once(ws).chain(bs).collect()
}

impl ParamSlots for nn::Linear {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        weight_and_bias(&mut self.ws, self.bs.as_mut())
    }
}

impl<ND> ParamSlots for nn::Conv<ND> {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        weight_and_bias(&mut self.ws, self.bs.as_mut())
    }
}

impl ParamSlots for nn::BatchNorm {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        self.ws.iter_mut().chain(self.bs.iter_mut()).collect()
    }
}

impl ParamSlots for nn::LayerNorm {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        self.ws.iter_mut().chain(self.bs.iter_mut()).collect()
    }
}

impl ParamSlots for nn::GroupNorm {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        self.ws.iter_mut().chain(self.bs.iter_mut()).collect()
    }
}

impl ParamSlots for nn::Embedding {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        vec![&mut self.ws]
    }
}

impl<T: ParamSlots> ParamSlots for Vec<T> {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        self.iter_mut().flat_map(ParamSlots::param_slots).collect()
    }
}

impl<T: ParamSlots> ParamSlots for Option<T> {
    fn param_slots(&mut self) -> Vec<&mut Tensor> {
        self.iter_mut().flat_map(ParamSlots::param_slots).collect()
    }
}

/// A user's `tch::nn` module (any [`nn::ModuleT`] — every [`nn::Module`] is one — with
/// [`ParamSlots`]) as a metl [`Model`]; see the [module documentation](self).
#[derive(Debug)]
pub struct Functional<M> {
    module: Mutex<M>,
    names: Vec<String>,
    params: Params,
}

impl<M: nn::ModuleT + ParamSlots> Functional<M> {
    /// Adapts `module`, whose parameters are variables of `vs`: each slot is named after
    /// the trainable variable of `vs` it holds. Errors when a slot is not a trainable
    /// variable of `vs` (a tensor made outside the store, a frozen variable) or when two
    /// slots hold the same variable.
    pub fn new(mut module: M, vs: &nn::VarStore) -> Result<Self> {
        let variables: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let mut entries = Vec::new();
        for (i, slot) in module.param_slots().into_iter().enumerate() {
            let name =
                variables.iter().find(|(_, v)| same_tensor(v, slot)).map(|(n, _)| n.clone()).ok_or_else(
                    || {
                        ModelError::invalid(
                            "functional.param_slots",
                            format!("slot {i} (shape {:?})", slot.size()),
                            "must be a trainable variable of the VarStore given to Functional::new",
                        )
                    },
                )?;
            entries.push((name, slot.shallow_clone()));
        }
        if entries.is_empty() {
            return Err(ModelError::invalid("functional.param_slots", "[]", "the module lists no parameter"));
        }
        let params = Params::from_named(entries)?;
        Ok(Self { names: params.names().to_vec(), module: Mutex::new(module), params })
    }

    /// The module's own parameters θ (the `VarStore` variables, sharing storage), named
    /// after them, in slot order: the meta-parameters to hand to a meta-learner.
    pub fn params(&self) -> Params {
        self.params.shallow_clone()
    }

    /// The wrapped module (locked for the duration of the borrow).
    pub fn module(&self) -> MutexGuard<'_, M> {
        lock(&self.module)
    }

    /// The module back.
    pub fn into_inner(self) -> M {
        self.module.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// `module.forward_t(x, train)` with the tensors of `params` in its slots; errors when
    /// `params` lacks one of the module's parameter names.
    pub fn f_forward(&self, params: &Params, x: &Tensor, train: bool) -> Result<Tensor> {
        let tensors = self
            .names
            .iter()
            .map(|name| {
                params.get(name).map(Tensor::shallow_clone).ok_or_else(|| ModelError::MissingParam {
                    name: name.clone(),
                    context: format!(
                        "the parameters given to Functional::forward ([{}])",
                        params.names().join(", ")
                    ),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut module = lock(&self.module);
        let swapped = Swapped::new(&mut *module, tensors);
        Ok(swapped.module().forward_t(x, train))
    }
}

fn lock<M>(module: &Mutex<M>) -> MutexGuard<'_, M> {
    // A forward pass that panicked has had its tensors put back by `Swapped`'s drop, so a
    // poisoned lock holds a consistent module.
    module.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `a` and `b` are the same tensor (same storage, offset and shape).
fn same_tensor(a: &Tensor, b: &Tensor) -> bool {
    a.data_ptr() == b.data_ptr() && a.size() == b.size() && a.device() == b.device()
}

/// A module with other tensors in its slots; the module's own go back on drop (also when
/// the forward pass panics).
struct Swapped<'a, M: ParamSlots> {
    module: &'a mut M,
    saved: Vec<Tensor>,
}

impl<'a, M: ParamSlots> Swapped<'a, M> {
    fn new(module: &'a mut M, tensors: Vec<Tensor>) -> Self {
        let saved = module
            .param_slots()
            .into_iter()
            .zip(tensors)
            .map(|(slot, t)| std::mem::replace(slot, t))
            .collect();
        Self { module, saved }
    }

    fn module(&self) -> &M {
        self.module
    }
}

impl<M: ParamSlots> Drop for Swapped<'_, M> {
    fn drop(&mut self) {
        let saved = std::mem::take(&mut self.saved);
        for (slot, own) in self.module.param_slots().into_iter().zip(saved) {
            *slot = own;
        }
    }
}

impl<M: nn::ModuleT + ParamSlots> Model for Functional<M> {
    /// The module's own parameters: a `tch::nn` module is initialised when it is built, so
    /// `path` is not used (see [`Functional::params`]).
    fn init(&self, _path: &nn::Path<'_>) -> Result<Params> {
        Ok(self.params())
    }

    /// # Panics
    /// When `params` lacks one of the module's parameter names ([`Functional::f_forward`]
    /// returns the error instead), or where the module's own forward pass panics.
    fn forward(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        self.f_forward(params, x, train).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::ModuleT, Device, Kind};

    #[derive(Debug)]
    struct Net {
        conv: nn::Conv2D,
        norm: nn::BatchNorm,
        fc: nn::Linear,
    }

    impl Net {
        fn new(p: &nn::Path<'_>) -> Self {
            Net {
                conv: nn::conv2d(p / "conv", 1, 4, 3, Default::default()),
                norm: nn::batch_norm2d(p / "norm", 4, Default::default()),
                fc: nn::linear(p / "fc", 4 * 4 * 4, 3, Default::default()),
            }
        }
    }

    impl nn::ModuleT for Net {
        fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
            x.apply(&self.conv).apply_t(&self.norm, train).relu().flatten(1, -1).apply(&self.fc)
        }
    }

    impl ParamSlots for Net {
        fn param_slots(&mut self) -> Vec<&mut Tensor> {
            crate::param_slots!(self.conv, self.norm, self.fc)
        }
    }

    fn setup() -> (nn::VarStore, Functional<Net>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Net::new(&(vs.root() / "net"));
        let model = Functional::new(net, &vs).unwrap();
        (vs, model)
    }

    #[test]
    fn names_follow_the_var_store_and_leave_out_running_statistics() {
        let (vs, model) = setup();
        let names = model.params().names().to_vec();
        assert_eq!(
            names,
            [
                "net.conv.weight",
                "net.conv.bias",
                "net.norm.weight",
                "net.norm.bias",
                "net.fc.weight",
                "net.fc.bias"
            ]
        );
        let mut expected = Params::from_var_store(&vs, "").unwrap().names().to_vec();
        expected.sort();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn forward_on_own_params_is_the_module_and_other_params_are_put_back() {
        let (_vs, model) = setup();
        let x = Tensor::randn([2, 1, 6, 6], (Kind::Float, Device::Cpu));
        let own = model.module().forward_t(&x, false);
        let theta = model.params();
        let same = model.forward(&theta, &x, false);
        assert_eq!((own - &same).abs().max().double_value(&[]), 0.0);
        let zeros = theta.map(|_, t| t.zeros_like());
        let out = model.forward(&zeros, &x, false);
        assert_eq!(out.abs().max().double_value(&[]), 0.0);
        // The module's own tensors are back in place.
        let again = model.module().forward_t(&x, false);
        assert_eq!((again - same).abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn gradients_flow_into_the_given_tensors() {
        let (_vs, model) = setup();
        let x = Tensor::randn([2, 1, 6, 6], (Kind::Float, Device::Cpu));
        let theta = model.params();
        let grads = theta.grads(&model.forward(&theta, &x, true).sum(Kind::Float), true).unwrap();
        let phi = theta.sgd(&grads, 0.1).unwrap();
        let meta = theta.grads(&model.forward(&phi, &x, true).square().sum(Kind::Float), false).unwrap();
        for (name, g) in meta.iter() {
            assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name}");
        }
    }

    #[test]
    fn missing_names_and_foreign_tensors_are_errors() {
        let (_vs, model) = setup();
        let x = Tensor::randn([2, 1, 6, 6], (Kind::Float, Device::Cpu));
        let partial = model.params().filter(|n| !n.starts_with("net.fc"));
        let err = model.f_forward(&partial, &x, false).unwrap_err().to_string();
        assert!(err.contains("net.fc.weight"), "{err}");

        let vs = nn::VarStore::new(Device::Cpu);
        let mut layer = nn::linear(vs.root() / "fc", 2, 2, Default::default());
        layer.ws = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        #[derive(Debug)]
        struct One(nn::Linear);
        impl nn::Module for One {
            fn forward(&self, x: &Tensor) -> Tensor {
                x.apply(&self.0)
            }
        }
        impl ParamSlots for One {
            fn param_slots(&mut self) -> Vec<&mut Tensor> {
                self.0.param_slots()
            }
        }
        let err = Functional::new(One(layer), &vs).unwrap_err().to_string();
        assert!(err.contains("slot 0"), "{err}");
    }
}
