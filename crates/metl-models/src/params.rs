//! [`Params`]: the one parameter abstraction of metl — ordered, named tensors.
//!
//! A model in metl holds no weights; its `forward` takes a [`Params`]. The same model thus
//! runs on
//! - the *slow weights* θ, leaf tensors registered in a [`tch::nn::VarStore`] so that any
//!   tch optimizer trains them (create them with [`ParamsBuilder`]);
//! - *fast weights* φ = θ − α∇L(θ), non-leaf tensors produced by [`Params::sgd`] from
//!   gradients taken with `create_graph`, through which a meta-gradient flows (second order);
//! - *task-stacked* weights, every tensor with a leading task dimension `T`
//!   ([`Params::expand_tasks`]), for the task-batched forward passes.
//!
//! Names follow PyTorch's `state_dict` convention (`layers.0.weight`), so a metl checkpoint
//! ([`Params::save_safetensors`]) loads in Python with `safetensors.torch.load_file`.

use crate::error::{ModelError, Result};
use std::{collections::HashMap, path::Path, sync::Arc};
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug)]
struct NameIndex {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl NameIndex {
    fn new(names: Vec<String>) -> Result<Self> {
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if index.insert(name.clone(), i).is_some() {
                return Err(ModelError::ParamsMismatch(format!("duplicate parameter name `{name}`")));
            }
        }
        Ok(Self { names, index })
    }
}

/// Ordered, named tensors: a model's parameters, or fast weights derived from them.
///
/// Cloning with [`Params::shallow_clone`] shares storage, like [`Tensor::shallow_clone`].
#[derive(Debug)]
pub struct Params {
    names: Arc<NameIndex>,
    tensors: Vec<Tensor>,
}

impl Params {
    /// Parameters from `(name, tensor)` pairs, in that order. Names must be unique.
    pub fn from_named(entries: Vec<(String, Tensor)>) -> Result<Self> {
        let (names, tensors): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
        Ok(Self { names: Arc::new(NameIndex::new(names)?), tensors })
    }

    /// The trainable variables of a [`nn::VarStore`] registered under `prefix` (dotted, e.g.
    /// `net` or `net.encoder`; `""` for all of them), sorted by name, with `prefix.` removed
    /// from the names, sharing storage with the store: the parameters of a model a user
    /// built with `tch::nn` (`nn::linear(&vs.root() / "net" / "fc1", ..)` gives `fc1.weight`
    /// and `fc1.bias`). Non-trainable variables (tch's batch-norm running statistics) are
    /// left out. Errors when nothing is registered under `prefix`.
    ///
    /// ```
    /// use metl_models::Params;
    /// use tch::{nn, Device};
    ///
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let _fc1 = nn::linear(&vs.root() / "net" / "fc1", 3, 4, Default::default());
    /// let _fc2 = nn::linear(&vs.root() / "net" / "fc2", 4, 1, Default::default());
    /// let theta = Params::from_var_store(&vs, "net").unwrap();
    /// assert_eq!(theta.names(), ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]);
    /// assert_eq!(theta.numel(), 3 * 4 + 4 + 4 + 1);
    /// ```
    pub fn from_var_store(vs: &nn::VarStore, prefix: &str) -> Result<Self> {
        let start = if prefix.is_empty() { String::new() } else { format!("{prefix}.") };
        let mut entries: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .filter_map(|(name, t)| name.strip_prefix(start.as_str()).map(|rest| (rest.to_owned(), t)))
            .collect();
        if entries.is_empty() {
            return Err(ModelError::MissingParam {
                name: format!("{prefix}.*"),
                context: "no trainable variable of the VarStore is registered under this prefix".into(),
            });
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Self::from_named(entries)
    }

    /// No tensors at all.
    pub fn empty() -> Self {
        Self::from_named(Vec::new()).expect("no names, no duplicates")
    }

    /// New tensors with the same names (and order) as `self`.
    ///
    /// # Panics
    /// If `tensors` does not have exactly one tensor per name (a programming error).
    pub fn with_tensors(&self, tensors: Vec<Tensor>) -> Self {
        assert_eq!(tensors.len(), self.len(), "one tensor per parameter name");
        Self { names: Arc::clone(&self.names), tensors }
    }

    /// The number of named tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The total number of scalars.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(|t| t.numel()).sum()
    }

    /// The names, in order.
    pub fn names(&self) -> &[String] {
        &self.names.names
    }

    /// The tensors, in order.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// `(name, tensor)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.names.iter().map(String::as_str).zip(&self.tensors)
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.names.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor called `name`, or [`ModelError::MissingParam`].
    pub fn f_get(&self, name: &str) -> Result<&Tensor> {
        self.get(name)
            .ok_or_else(|| ModelError::MissingParam { name: name.to_owned(), context: String::new() })
    }

    /// Whether both sets have the same names in the same order.
    pub fn same_names(&self, other: &Params) -> bool {
        Arc::ptr_eq(&self.names, &other.names) || self.names() == other.names()
    }

    /// A copy sharing storage with `self`.
    pub fn shallow_clone(&self) -> Self {
        self.map(|_, t| t.shallow_clone())
    }

    /// Applies `f` to every tensor, keeping the names.
    pub fn map(&self, mut f: impl FnMut(&str, &Tensor) -> Tensor) -> Self {
        self.with_tensors(self.iter().map(|(n, t)| f(n, t)).collect())
    }

    /// Applies `f` to matching tensors of `self` and `other`, which must have the same names.
    pub fn zip_map(
        &self,
        other: &Params,
        mut f: impl FnMut(&str, &Tensor, &Tensor) -> Tensor,
    ) -> Result<Self> {
        self.check_same_names(other)?;
        Ok(self.with_tensors(self.iter().zip(&other.tensors).map(|((n, a), b)| f(n, a, b)).collect()))
    }

    /// Errors unless `other` has the same names in the same order.
    pub fn check_same_names(&self, other: &Params) -> Result<()> {
        if self.same_names(other) {
            Ok(())
        } else {
            Err(ModelError::ParamsMismatch(format!(
                "expected [{}], got [{}]",
                self.names().join(", "),
                other.names().join(", ")
            )))
        }
    }

    /// The tensors whose names satisfy `keep`, sharing storage.
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Self {
        let entries = self.iter().filter(|(n, _)| keep(n)).map(|(n, t)| (n.to_owned(), t.shallow_clone()));
        Self::from_named(entries.collect()).expect("names of a subset are unique")
    }

    /// Splits into (names satisfying `first`, the rest), sharing storage.
    pub fn split(&self, mut first: impl FnMut(&str) -> bool) -> (Self, Self) {
        let mut in_first = HashMap::new();
        for name in self.names() {
            in_first.insert(name.as_str(), first(name));
        }
        (self.filter(|n| in_first[n]), self.filter(|n| !in_first[n]))
    }

    /// Splits into (the tensors under any of `prefixes` — named `prefix` or `prefix.…` —,
    /// the rest), sharing storage: e.g. task-specific heads against the shared trunk,
    /// `theta.split_prefixes(&["heads"])`, or the head ANIL adapts against the body.
    ///
    /// ```
    /// # use metl_models::Params;
    /// # use tch::{Device, Kind, Tensor};
    /// let t = || Tensor::zeros([1], (Kind::Float, Device::Cpu));
    /// let names = ["trunk.0.weight", "heads.0.weight", "heads.1.weight", "headsup"];
    /// let theta = Params::from_named(names.iter().map(|n| (n.to_string(), t())).collect()).unwrap();
    /// let (heads, shared) = theta.split_prefixes(&["heads"]);
    /// assert_eq!(heads.names(), ["heads.0.weight", "heads.1.weight"]);
    /// assert_eq!(shared.names(), ["trunk.0.weight", "headsup"]);
    /// ```
    pub fn split_prefixes(&self, prefixes: &[&str]) -> (Self, Self) {
        self.split(|name| {
            prefixes
                .iter()
                .any(|p| name == *p || name.strip_prefix(p).is_some_and(|rest| rest.starts_with('.')))
        })
    }

    /// The same tensors with `prefix.` put before every name (sub-module parameters as
    /// seen from the parent, like PyTorch's `state_dict`).
    pub fn prefixed(&self, prefix: &str) -> Self {
        let entries = self.iter().map(|(n, t)| (format!("{prefix}.{n}"), t.shallow_clone()));
        Self::from_named(entries.collect()).expect("prefixing keeps names unique")
    }

    /// The tensors whose names start with `prefix.`, with that prefix removed (the
    /// parameters of a sub-module), sharing storage.
    pub fn sub(&self, prefix: &str) -> Self {
        let start = format!("{prefix}.");
        let entries = self.iter().filter_map(|(n, t)| {
            n.strip_prefix(start.as_str()).map(|rest| (rest.to_owned(), t.shallow_clone()))
        });
        Self::from_named(entries.collect()).expect("names of a subset are unique")
    }

    /// Concatenates two disjoint sets (`self` first).
    pub fn merge(&self, other: &Params) -> Result<Self> {
        let entries = self.iter().chain(other.iter()).map(|(n, t)| (n.to_owned(), t.shallow_clone()));
        Self::from_named(entries.collect())
    }

    /// Copies detached from the autograd graph (sharing storage).
    pub fn detach(&self) -> Self {
        self.map(|_, t| t.detach())
    }

    /// Detached copies that require gradients: fresh leaves for an inner loop.
    pub fn detached_leaves(&self) -> Self {
        self.map(|_, t| t.detach().set_requires_grad(true))
    }

    /// Deep copies (new storage), detached.
    pub fn deep_copy(&self) -> Self {
        self.map(|_, t| t.detach().copy())
    }

    /// The device of the first tensor (CPU when empty).
    pub fn device(&self) -> Device {
        self.tensors.first().map_or(Device::Cpu, Tensor::device)
    }

    /// The kind of the first tensor (`Float` when empty).
    pub fn kind(&self) -> Kind {
        self.tensors.first().map_or(Kind::Float, Tensor::kind)
    }

    /// Copies on `device`.
    pub fn to_device(&self, device: Device) -> Self {
        self.map(|_, t| t.to_device(device))
    }

    /// Copies converted to `kind`.
    pub fn to_kind(&self, kind: Kind) -> Self {
        self.map(|_, t| t.to_kind(kind))
    }

    /// ∂`loss`/∂θ for every tensor θ, as a [`Params`] with the same names.
    ///
    /// With `create_graph` the gradients are themselves differentiable (for second-order
    /// meta-gradients). Tensors `loss` does not depend on get zero gradients (libtorch
    /// returns undefined tensors for them).
    pub fn grads(&self, loss: &Tensor, create_graph: bool) -> Result<Self> {
        let grads = Tensor::f_run_backward(&[loss], &self.tensors, create_graph, create_graph)?;
        Ok(self.with_tensors(
            grads
                .into_iter()
                .zip(&self.tensors)
                .map(|(g, t)| if g.defined() { g } else { t.zeros_like() })
                .collect(),
        ))
    }

    /// One SGD step `θ − lr · g` (differentiable: fast weights).
    pub fn sgd(&self, grads: &Params, lr: f64) -> Result<Self> {
        self.zip_map(grads, |_, t, g| t - g * lr)
    }

    /// One SGD step with a per-tensor learning rate `θ − lr ⊙ g` (Meta-SGD, MAML++).
    pub fn sgd_with(&self, grads: &Params, lrs: &Params) -> Result<Self> {
        let lrs = self.check_same_names(lrs).map(|_| lrs)?;
        self.zip_map(grads, |n, t, g| t - g * lrs.get(n).expect("same names"))
    }

    /// Every tensor repeated along a new leading task dimension of size `tasks`, as a
    /// differentiable view (`expand`), for task-batched forward passes. The gradient of a
    /// sum of per-task losses with respect to the result holds each task's own gradient.
    pub fn expand_tasks(&self, tasks: usize) -> Self {
        self.map(|_, t| {
            let mut shape = vec![tasks as i64];
            shape.extend(t.size());
            t.unsqueeze(0).expand(&shape, false)
        })
    }

    /// The `index`-th task's parameters of task-stacked parameters.
    pub fn task(&self, index: usize) -> Self {
        self.map(|_, t| t.select(0, index as i64))
    }

    /// Stacks per-task parameters along a new leading task dimension.
    pub fn stack_tasks(tasks: &[Params]) -> Result<Self> {
        let first = tasks.first().ok_or_else(|| ModelError::ParamsMismatch("no tasks to stack".into()))?;
        for other in &tasks[1..] {
            first.check_same_names(other)?;
        }
        Ok(first.with_tensors(
            (0..first.len())
                .map(|i| Tensor::stack(&tasks.iter().map(|p| &p.tensors[i]).collect::<Vec<_>>(), 0))
                .collect(),
        ))
    }

    /// The parameters as one flat vector (for gradient algebra and tests).
    pub fn flatten(&self) -> Tensor {
        Tensor::cat(&self.tensors.iter().map(|t| t.reshape([-1])).collect::<Vec<_>>(), 0)
    }

    /// Parameters shaped like `self` from a flat vector (the inverse of [`Params::flatten`]).
    pub fn unflatten(&self, flat: &Tensor) -> Result<Self> {
        let expected = self.numel() as i64;
        if flat.size() != [expected] {
            return Err(ModelError::ShapeMismatch {
                name: "<flat>".into(),
                expected: vec![expected],
                found: flat.size(),
                context: String::new(),
            });
        }
        let mut offset = 0;
        Ok(self.map(|_, t| {
            let n = t.numel() as i64;
            let part = flat.narrow(0, offset, n).view(t.size().as_slice());
            offset += n;
            part
        }))
    }

    /// Copies the values of `src` into `self` in place, without recording gradients
    /// (e.g. loading a checkpoint into VarStore-registered parameters).
    pub fn copy_from(&self, src: &Params) -> Result<()> {
        for (name, dst) in self.iter() {
            let s = src
                .get(name)
                .ok_or_else(|| ModelError::MissingParam { name: name.to_owned(), context: String::new() })?;
            if s.size() != dst.size() {
                return Err(ModelError::ShapeMismatch {
                    name: name.to_owned(),
                    expected: dst.size(),
                    found: s.size(),
                    context: String::new(),
                });
            }
            tch::no_grad(|| dst.shallow_clone().f_copy_(s))?;
        }
        Ok(())
    }

    /// Writes the parameters to a safetensors file, atomically (a temporary file in the
    /// same folder, then a rename), so a crash never leaves a half-written checkpoint.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let err = |message: String| ModelError::Checkpoint { path: path.to_owned(), message };
        let entries: Vec<(&str, Tensor)> =
            self.iter().map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous())).collect();
        let tmp = temporary_sibling(path);
        Tensor::write_safetensors(&entries, &tmp).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e.to_string())
        })
    }

    /// Reads every tensor of a safetensors file onto `device`, sorted by name.
    pub fn load_safetensors(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let path = path.as_ref();
        let mut entries = Tensor::read_safetensors(path)
            .map_err(|e| ModelError::Checkpoint { path: path.to_owned(), message: e.to_string() })?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Self::from_named(entries.into_iter().map(|(n, t)| (n, t.to_device(device))).collect())
    }

    /// Loads a safetensors file into `self` in place, checking that every name is present
    /// with the right shape (the errors name the file).
    pub fn load_safetensors_into(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let loaded = Self::load_safetensors(path, self.device())?;
        let context = path.display().to_string();
        self.copy_from(&loaded).map_err(|e| match e {
            ModelError::MissingParam { name, .. } => ModelError::MissingParam { name, context },
            ModelError::ShapeMismatch { name, expected, found, .. } => {
                ModelError::ShapeMismatch { name, expected, found, context }
            }
            other => other,
        })
    }
}

fn temporary_sibling(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

impl std::ops::Index<&str> for Params {
    type Output = Tensor;

    /// The tensor called `name`.
    ///
    /// # Panics
    /// If there is none: models index the parameters they created themselves; use
    /// [`Params::f_get`] for user-supplied names.
    fn index(&self, name: &str) -> &Tensor {
        self.get(name).unwrap_or_else(|| panic!("no parameter named `{name}`"))
    }
}

/// Creates parameters registered in a [`nn::VarStore`] under a path, so that tch's
/// optimizers train them, on the store's device and kind.
#[derive(Debug)]
pub struct ParamsBuilder<'a> {
    path: nn::Path<'a>,
    entries: Vec<(String, Tensor)>,
}

impl<'a> ParamsBuilder<'a> {
    /// A builder registering variables under `path`.
    pub fn new(path: &nn::Path<'a>) -> Self {
        Self { path: path.clone(), entries: Vec::new() }
    }

    /// Adds the trainable variable `name` (dotted, e.g. `layers.0.weight`).
    pub fn var(&mut self, name: &str, dims: &[i64], init: nn::Init) -> Result<&mut Self> {
        let (path, last) = self.leaf_path(name);
        let tensor = path.f_var(last, dims, init)?;
        self.entries.push((name.to_owned(), tensor));
        Ok(self)
    }

    /// Adds the trainable variable `name` (dotted) holding a copy of `value` (its shape; the
    /// store's device and kind).
    pub fn var_copy(&mut self, name: &str, value: &Tensor) -> Result<&mut Self> {
        let (path, last) = self.leaf_path(name);
        let kind = path.kind();
        let tensor = path.f_var_copy(last, &value.to_device(path.device()).to_kind(kind))?;
        self.entries.push((name.to_owned(), tensor));
        Ok(self)
    }

    fn leaf_path<'n>(&self, name: &'n str) -> (nn::Path<'a>, &'n str) {
        let (prefix, last) = match name.rsplit_once('.') {
            Some((prefix, last)) => (Some(prefix), last),
            None => (None, name),
        };
        let mut path = self.path.clone();
        for part in prefix.into_iter().flat_map(|p| p.split('.')) {
            path = path.sub(part);
        }
        (path, last)
    }

    /// The path the variables are registered under (its device and kind are theirs).
    pub fn path(&self) -> &nn::Path<'a> {
        &self.path
    }

    /// The parameters created so far.
    pub fn build(self) -> Result<Params> {
        Params::from_named(self.entries)
    }
}

/// The initialisation PyTorch's `nn.Linear` and `nn.Conv2d` use for weights and biases:
/// `U(−1/√fan_in, 1/√fan_in)` (Kaiming uniform with `a = √5` for weights).
pub fn torch_default_init(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -bound, up: bound }
}
