//! # metl-meta
//!
//! Meta-learning algorithms behind one interface, [`MetaLearner`]: train on many small
//! tasks so that a model adapts to a new task from a few examples.
//!
//! The interface and its shared machinery:
//! - [`learner`]: the [`MetaLearner`] trait (meta-training step, adaptation, prediction,
//!   checkpoint state);
//! - [`evaluate()`](mod@evaluate): mean query loss/accuracy over test tasks with 95% intervals;
//! - [`inner`]: the one inner loop (fixed, per-parameter or per-step rates; SGD, momentum or
//!   Adam; mini-batches of the support set);
//! - [`outer`]: the outer optimizer with its learning-rate schedule and checkpoint state;
//! - [`task_combiner`]: combining the per-task meta-gradients of a meta-batch otherwise than
//!   by their mean (an MTL gradient method over the tasks of the batch);
//! - [`maml_family`]: the task-batched engine shared by the gradient-based learners;
//! - [`metric`]: the engine shared by the metric-based learners;
//! - [`adaptive`]: the engine of the gradient-based learners outside the MAML family (iMAML,
//!   CAVIA), and [`conjugate_gradient`], the solver of iMAML's meta-gradient;
//! - [`validate`]: the checks every learner makes of a [`metl_data::TaskBatch`] before
//!   using it (typed errors, not panics).
//!
//! The algorithms, one per module:
//! - [`maml`]: MAML (Finn et al. 2017), second order or first order;
//! - [`meta_sgd`]: Meta-SGD (Li et al. 2017), learned per-parameter inner rates;
//! - [`anil`]: ANIL (Raghu et al. 2020), inner loop on the head only;
//! - [`maml_plus_plus`]: MAML++ (Antoniou et al. 2019);
//! - [`reptile`]: Reptile (Nichol et al. 2018);
//! - [`imaml`]: iMAML (Rajeswaran et al. 2019), implicit meta-gradients by conjugate
//!   gradients;
//! - [`cavia`]: CAVIA (Zintgraf et al. 2019), context parameters adapted per task;
//! - [`protonet`]: prototypical networks (Snell et al. 2017), Euclidean or cosine;
//! - [`matching`]: matching networks (Vinyals et al. 2016) without full-context embeddings;
//! - [`metaoptnet`]: MetaOptNet (Lee et al. 2019), an embedding trained through a
//!   differentiable multi-class SVM or ridge-regression base learner;
//! - [`baseline`]: the fine-tuning baselines Baseline and Baseline++ (Chen et al. 2019).
//!
//! [`registry`] lists them by name (for command lines and `metl list`).
//!
//! ```
//! use metl_data::sinusoid::{SinusoidConfig, SinusoidTasks};
//! use metl_meta::{maml::{Maml, MamlConfig}, MetaLearner};
//! use metl_models::{mlp::MlpConfig, TaskLoss};
//! use tch::{nn, Device};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let (mlp, theta) = MlpConfig::new([1, 40, 40, 1]).init(&vs.root()).unwrap();
//! let mut maml = Maml::new(mlp, theta, &vs, TaskLoss::Mse, MamlConfig::default()).unwrap();
//! let mut tasks = SinusoidTasks::new(SinusoidConfig::default(), 0);
//! let report = maml.meta_train_step(&tasks.sample_batch(25, 10, 10, Device::Cpu).unwrap()).unwrap();
//! assert_eq!(report.step, 1);
//! assert!(report.loss.is_finite());
//!
//! // Adapt to fresh tasks and measure: the mean query MSE over 50 tasks, with its 95%
//! // interval, before adaptation and after one inner step.
//! let test = (0..2).map(|_| tasks.sample_batch(25, 10, 50, Device::Cpu).unwrap());
//! let results = metl_meta::evaluate(&maml, test, &[0, 1]).unwrap();
//! assert_eq!((results[1].steps, results[1].loss.n), (1, 50));
//! println!("after one step: {:.3}", results[1].loss);
//! ```
#![warn(missing_docs)]

pub mod error;
#[macro_use]
pub mod registry;
pub mod adaptive;
pub mod conjugate_gradient;
pub mod evaluate;
pub mod inner;
pub mod learner;
pub mod maml_family;
pub mod metric;
pub mod outer;
pub mod task_combiner;
pub mod validate;

pub use error::MetaError;
pub use evaluate::{evaluate, Estimate, Evaluation};
pub use learner::{MetaLearner, QueryOutcome, StepReport};

// The algorithms: one row each (see `registry`).
algorithm_table! {
    mod maml; "maml" => Maml(maml::MamlConfig), Gradient, |c| c.inner_steps,
        |c, p| maml::Maml::new(p.model, p.params, p.vs, p.loss, *c)?,
        "second-order MAML: differentiate through k SGD steps on the support set",
        "Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks";
    "fomaml" => Fomaml(maml::MamlConfig), Gradient, |c| c.inner_steps,
        |c, p| maml::Maml::new(p.model, p.params, p.vs, p.loss, maml::MamlConfig { first_order: true, ..*c })?,
        "first-order MAML: the query gradient at the adapted weights",
        "Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks";
    mod meta_sgd; "meta_sgd" => MetaSgd(meta_sgd::MetaSgdConfig), Gradient, |c| c.inner_steps,
        |c, p| meta_sgd::MetaSgd::new(p.model, p.params, p.loss, *c)?,
        "MAML with a learned inner learning rate per weight",
        "Li, Zhou, Chen & Li 2017, Meta-SGD: Learning to Learn Quickly for Few-Shot Learning";
    mod anil; "anil" => Anil(anil::AnilConfig), Gradient, |c| c.inner_steps,
        |c, p| anil::Anil::new(p.model, p.params, p.loss, c.clone())?,
        "MAML with the inner loop on the head only",
        "Raghu, Raghu, Bengio & Vinyals 2020, Rapid Learning or Feature Reuse?";
    mod maml_plus_plus; "maml_plus_plus" => MamlPlusPlus(maml_plus_plus::MamlPlusPlusConfig), Gradient, |c| c.inner_steps,
        |c, p| maml_plus_plus::MamlPlusPlus::new(p.model, p.params, p.loss, c.clone())?,
        "MAML with multi-step loss, per-layer per-step rates, per-step batch norm, derivative-order and cosine annealing",
        "Antoniou, Edwards & Storkey 2019, How to train your MAML";
    mod reptile; "reptile" => Reptile(reptile::ReptileConfig), Gradient, |c| c.inner_steps,
        |c, p| reptile::Reptile::new(p.model, p.params, p.loss, *c)?,
        "move the initialisation towards the weights adapted to each task",
        "Nichol, Achiam & Schulman 2018, On First-Order Meta-Learning Algorithms";
    mod imaml; "imaml" => IMaml(imaml::IMamlConfig), Gradient, |c| c.inner_steps,
        |c, p| imaml::IMaml::new(p.model, p.params, p.loss, *c)?,
        "a proximally regularised inner problem and its implicit meta-gradient by conjugate gradients",
        "Rajeswaran, Finn, Kakade & Levine 2019, Meta-Learning with Implicit Gradients";
    mod cavia; "cavia" => Cavia(cavia::CaviaConfig), Gradient, |c| c.inner_steps,
        |c, p| cavia::Cavia::new(p.model, p.params, p.loss, *c)?,
        "adapt a few context parameters given with the input, zero for every task; meta-learn the network",
        "Zintgraf, Shiarlis, Kurin, Hofmann & Whiteson 2019, Fast Context Adaptation via Meta-Learning";
    mod protonet; "protonet" => Protonet(protonet::ProtoNetConfig), Metric, |_c| 0,
        |c, p| protonet::ProtoNet::new(p.model, p.params, *c)?,
        "classify by distance to class-mean embeddings (Euclidean or cosine)",
        "Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot Learning";
    mod matching; "matching" => Matching(matching::MatchingNetConfig), Metric, |_c| 0,
        |c, p| matching::MatchingNet::new(p.model, p.params, *c)?,
        "attention over the support embeddings by cosine similarity",
        "Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra 2016, Matching Networks for One Shot Learning";
    mod metaoptnet; "metaoptnet" => MetaOptNet(metaoptnet::MetaOptNetConfig), Metric, |_c| 0,
        |c, p| metaoptnet::MetaOptNet::new(p.model, p.params, *c)?,
        "an embedding trained through a convex base learner fitted to the support embeddings (multi-class SVM or ridge regression)",
        "Lee, Maji, Ravichandran & Soatto 2019, Meta-Learning with Differentiable Convex Optimization";
    mod baseline; "baseline" => Baseline(baseline::BaselineConfig), Pretraining, |_c| 100,
        |c, p| baseline::Baseline::new(p.model, p.params, p.features, p.train_classes, *c)?,
        "pre-train a classifier on all training classes, fit a new linear head per episode",
        "Chen, Liu, Kira, Wang & Huang 2019, A Closer Look at Few-shot Classification";
    "baseline_plus_plus" => BaselinePlusPlus(baseline::BaselineConfig), Pretraining, |_c| 100,
        |c, p| baseline::Baseline::new(p.model, p.params, p.features, p.train_classes, baseline::BaselineConfig {
            head: match c.head {
                baseline::BaselineHead::Cosine { scale } => baseline::BaselineHead::Cosine { scale },
                baseline::BaselineHead::Linear => baseline::BaselineHead::Cosine { scale: None },
            },
            ..*c
        })?,
        "Baseline with a cosine-similarity head (its `head` setting may only set the scale)",
        "Chen, Liu, Kira, Wang & Huang 2019, A Closer Look at Few-shot Classification";
}
