//! [`MetricLearner`]: the engine of the metric-based learners — prototypical networks,
//! matching networks and MetaOptNet — which embed every example of an episode with a
//! network f_θ and classify each query from its embedding and the labelled support
//! embeddings, with no inner loop:
//!
//! ```text
//! zˢ = f_θ(Xˢ),  zᵠ = f_θ(Xᵠ),   p(y = c | xᵠ) = softmax_c(s_c(zᵠ; zˢ, Yˢ)),
//! min_θ (1/B) Σᵢ CE(s(zᵠᵢ; zˢᵢ, Yˢᵢ), Yᵠᵢ).
//! ```
//!
//! The scores `s` are the [`EpisodeClassifier`]: negative distances to class prototypes
//! ([`crate::protonet`]), attention over the support set ([`crate::matching`]) or a convex
//! base learner fitted to the support embeddings ([`crate::metaoptnet`], whose learned
//! logit scale the outer loop trains with θ: [`EpisodeClassifier::parameters`]). Support and
//! query of an episode go through the network in one forward pass (as the reference
//! implementations do, so batch-norm statistics cover both); episodes of a meta-batch are
//! evaluated task-batched. Labels are class indices `0..N` within each episode.

use crate::{
    error::{MetaError, Result},
    learner::{MetaLearner, QueryOutcome, StepReport},
    outer::{check_lr, LrSchedule, OuterLoop},
};
use metl_data::TaskBatch;
use metl_models::{Model, Params, TaskLoss};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Scores of every query against the `N` classes of its episode.
pub trait EpisodeClassifier {
    /// Logits `[T, Q, N]` from support embeddings `[T, S, D]`, their one-hot labels
    /// `[T, S, N]` and query embeddings `[T, Q, D]`.
    fn logits(&self, support: &Tensor, labels: &Tensor, query: &Tensor) -> Tensor;

    /// The classifier's own learned parameters (MetaOptNet's logit scale), leaf tensors
    /// that [`EpisodeClassifier::logits`] uses: the outer loop trains them with the
    /// embedding, under `classifier.<name>`. None by default.
    fn parameters(&self) -> Params {
        Params::empty()
    }
}

/// One-hot labels `[T, S, N]` of class indices `[T, S]` in `0..N`, in `kind`, with `N` the
/// number of classes (the largest index plus one). Errors on negative indices or a class
/// without any example.
pub fn one_hot_labels(labels: &Tensor, kind: Kind) -> Result<(Tensor, i64)> {
    if labels.numel() == 0 {
        return Err(MetaError::InvalidBatch("the support set is empty".into()));
    }
    let (min, max) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
    if min < 0 {
        return Err(MetaError::InvalidBatch(format!("negative class index {min} in the support labels")));
    }
    let ways = max + 1;
    let one_hot = labels.one_hot(ways).to_kind(kind);
    let empty = one_hot.sum_dim_intlist(1, false, Kind::Float).eq(0.0).any().int64_value(&[]) != 0;
    if empty {
        return Err(MetaError::InvalidBatch(format!(
            "support labels must cover every class 0..{ways} of each episode; one has no example"
        )));
    }
    Ok((one_hot, ways))
}

/// Rows of `x` `[..., D]` scaled to unit Euclidean norm (zero rows stay zero).
pub fn normalize_rows(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [-1], true).clamp_min(1e-12)
}

/// Outer-loop settings shared by the metric-based learners.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricTraining {
    /// Adam learning rate (default 1e-3).
    pub outer_lr: f64,
    /// Its schedule (default constant).
    pub schedule: LrSchedule,
    /// Embed test episodes in training mode (batch statistics) instead of evaluation mode
    /// (default false).
    pub batch_statistics_at_test: bool,
}

impl Default for MetricTraining {
    fn default() -> Self {
        Self { outer_lr: 1e-3, schedule: LrSchedule::Constant, batch_statistics_at_test: false }
    }
}

impl MetricTraining {
    /// Checks every field; `outer_lr` and `schedule` name the fields in errors.
    pub fn validate(&self, outer_lr: &'static str, schedule: &'static str) -> Result<()> {
        check_lr(outer_lr, self.outer_lr)?;
        self.schedule.validate(schedule)
    }
}

/// The engine of the metric-based learners; see the module documentation.
pub struct MetricLearner<M: Model, C: EpisodeClassifier> {
    model: M,
    params: Params,
    classifier: C,
    outer: OuterLoop,
    batch_statistics_at_test: bool,
}

impl<M: Model, C: EpisodeClassifier + std::fmt::Debug> std::fmt::Debug for MetricLearner<M, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricLearner")
            .field("classifier", &self.classifier)
            .field("outer", &self.outer)
            .finish()
    }
}

impl<M: Model, C: EpisodeClassifier> MetricLearner<M, C> {
    /// A learner training the embedding `model` with parameters `params` (leaf tensors),
    /// and the classifier's own parameters if it has any, by Adam as `training` says.
    pub fn with_classifier(
        model: M,
        params: Params,
        classifier: C,
        training: MetricTraining,
    ) -> Result<Self> {
        let trained = params.merge(&classifier.parameters().prefixed("classifier"))?;
        let outer = OuterLoop::adam(&trained, training.outer_lr, training.schedule)?;
        Ok(Self {
            model,
            params,
            classifier,
            outer,
            batch_statistics_at_test: training.batch_statistics_at_test,
        })
    }

    /// The embedding network.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Its parameters θ.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }

    /// Support and query embeddings `[T, S, D]`, `[T, Q, D]` of every episode, from one
    /// forward pass per episode over support and query together. In evaluation mode
    /// (`train = false`) no statistic depends on the batch, so all episodes go through the
    /// network as one batch.
    pub fn embed(&self, batch: &TaskBatch, train: bool) -> Result<(Tensor, Tensor)> {
        let tasks = batch.num_tasks() as i64;
        let support = batch.support_x.size()[1];
        let x = Tensor::f_cat(&[&batch.support_x, &batch.query_x], 1)?;
        let z = if tasks == 1 || !train {
            let rows = x.size()[1];
            self.model.forward(&self.params, &x.flatten(0, 1), train).reshape([tasks, rows, -1])
        } else {
            self.model.forward_tasks(&self.params.expand_tasks(tasks as usize), &x, train)
        };
        let z = z.flatten(2, -1);
        let query = z.size()[1] - support;
        Ok((z.narrow(1, 0, support), z.narrow(1, support, query)))
    }

    /// Logits `[T, Q, N]` of every query.
    pub fn logits(&self, batch: &TaskBatch, train: bool) -> Result<Tensor> {
        crate::validate::validate_batch(batch, crate::validate::Targets::Classes, Some(&self.params))?;
        let (support, query) = self.embed(batch, train)?;
        let (labels, _) = one_hot_labels(&batch.support_y, support.kind())?;
        Ok(self.classifier.logits(&support, &labels, &query))
    }

    fn outcome(&self, batch: &TaskBatch, train: bool) -> Result<QueryOutcome> {
        let logits = self.logits(batch, train)?;
        let loss = TaskLoss::CrossEntropy;
        Ok(QueryOutcome {
            loss: loss.per_task(&logits, &batch.query_y),
            accuracy: loss.per_task_accuracy(&logits, &batch.query_y),
        })
    }
}

impl<M: Model, C: EpisodeClassifier> MetaLearner for MetricLearner<M, C> {
    fn meta_train_step(&mut self, batch: &TaskBatch) -> Result<StepReport> {
        let step = self.outer.steps() + 1;
        let outcome = self.outcome(batch, true)?;
        let loss = outcome.loss.mean(None::<Kind>);
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(MetaError::NonFiniteLoss { what: "query loss", value, step });
        }
        self.outer.zero_grad();
        loss.f_backward()?;
        let outer_lr = self.outer.step()?;
        Ok(StepReport { step, loss: value, accuracy: outcome.mean_accuracy(), outer_lr })
    }

    /// `steps` is ignored: the support set is used without any inner loop.
    fn adapt_and_evaluate(&self, batch: &TaskBatch, _steps: usize) -> Result<QueryOutcome> {
        tch::no_grad(|| self.outcome(batch, self.batch_statistics_at_test))
    }

    /// `steps` is ignored; the predictions are the logits `[T, Q, N]`.
    fn adapt_and_predict(&self, batch: &TaskBatch, _steps: usize) -> Result<Tensor> {
        tch::no_grad(|| self.logits(batch, self.batch_statistics_at_test))
    }

    crate::outer::outer_loop_methods!(model);
}
