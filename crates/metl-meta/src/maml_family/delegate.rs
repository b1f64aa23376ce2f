//! The [`crate::MetaLearner`] implementation of the family's members: each is a newtype
//! around [`MamlFamily`](super::MamlFamily) that delegates to the family's own.

/// Implements [`crate::MetaLearner`] for a newtype around [`MamlFamily`] in field `family`.
macro_rules! delegate_meta_learner {
    ($learner:ident) => {
        $crate::maml_family::delegate_meta_learner!($learner, |learner, batch| learner
            .family
            .meta_train_step(batch), {
            fn set_task_combiner(
                &mut self,
                combiner: Box<dyn $crate::task_combiner::TaskGradientCombiner>,
            ) -> $crate::error::Result<()> {
                self.family.set_task_combiner(combiner);
                Ok(())
            }
        });
    };
    ($learner:ident, |$this:ident, $batch:ident| $train_step:expr) => {
        $crate::maml_family::delegate_meta_learner!($learner, |$this, $batch| $train_step, {});
    };
    ($learner:ident, |$this:ident, $batch:ident| $train_step:expr, { $($extra:item)* }) => {
        impl<M: metl_models::Model> $crate::MetaLearner for $learner<M> {
            fn meta_train_step(
                &mut self,
                batch: &metl_data::TaskBatch,
            ) -> $crate::error::Result<$crate::StepReport> {
                let ($this, $batch) = (self, batch);
                $train_step
            }

            fn adapt_and_evaluate(
                &self,
                batch: &metl_data::TaskBatch,
                steps: usize,
            ) -> $crate::error::Result<$crate::QueryOutcome> {
                self.family.adapt_and_evaluate(batch, steps)
            }

            fn adapt_and_predict(
                &self,
                batch: &metl_data::TaskBatch,
                steps: usize,
            ) -> $crate::error::Result<tch::Tensor> {
                self.family.adapt_and_predict(batch, steps)
            }

            fn steps_taken(&self) -> u64 {
                self.family.outer().steps()
            }

            fn meta_parameters(&self) -> metl_models::Params {
                self.family.meta_parameters()
            }

            fn state(&self) -> metl_models::Params {
                self.family.state()
            }

            fn load_state(&mut self, state: &metl_models::Params) -> $crate::error::Result<()> {
                self.family.load_state(state)
            }

            fn outer_lr(&self) -> f64 {
                self.family.outer().lr()
            }

            fn set_collective(
                &mut self,
                collective: std::sync::Arc<dyn metl_dist::Collective>,
            ) -> $crate::error::Result<()> {
                self.family.set_collective(collective);
                Ok(())
            }

            fn tasks_per_pass(&self) -> Option<usize> {
                self.family.tasks_per_pass()
            }

            fn set_tasks_per_pass(&mut self, tasks: usize) -> $crate::error::Result<()> {
                self.family.set_tasks_per_pass(tasks)
            }

            $($extra)*
        }

        impl<M: metl_models::Model> std::ops::Deref for $learner<M> {
            type Target = $crate::maml_family::MamlFamily<M>;

            /// The shared MAML-family engine (parameters, settings, meta-loss).
            fn deref(&self) -> &Self::Target {
                &self.family
            }
        }
    };
}
pub(crate) use delegate_meta_learner;

/// The family itself is a [`crate::MetaLearner`]: build one from [`super::FamilySettings`]
/// for a combination the named members do not offer, and evaluate it like any learner.
impl<M: metl_models::Model> crate::MetaLearner for super::MamlFamily<M> {
    fn meta_train_step(&mut self, batch: &metl_data::TaskBatch) -> crate::error::Result<crate::StepReport> {
        super::MamlFamily::meta_train_step(self, batch)
    }

    fn adapt_and_evaluate(
        &self,
        batch: &metl_data::TaskBatch,
        steps: usize,
    ) -> crate::error::Result<crate::QueryOutcome> {
        super::MamlFamily::adapt_and_evaluate(self, batch, steps)
    }

    fn adapt_and_predict(
        &self,
        batch: &metl_data::TaskBatch,
        steps: usize,
    ) -> crate::error::Result<tch::Tensor> {
        super::MamlFamily::adapt_and_predict(self, batch, steps)
    }

    fn steps_taken(&self) -> u64 {
        self.outer().steps()
    }

    fn meta_parameters(&self) -> metl_models::Params {
        super::MamlFamily::meta_parameters(self)
    }

    fn state(&self) -> metl_models::Params {
        super::MamlFamily::state(self)
    }

    fn load_state(&mut self, state: &metl_models::Params) -> crate::error::Result<()> {
        super::MamlFamily::load_state(self, state)
    }

    fn outer_lr(&self) -> f64 {
        self.outer().lr()
    }

    fn set_collective(
        &mut self,
        collective: std::sync::Arc<dyn metl_dist::Collective>,
    ) -> crate::error::Result<()> {
        super::MamlFamily::set_collective(self, collective);
        Ok(())
    }

    fn tasks_per_pass(&self) -> Option<usize> {
        super::MamlFamily::tasks_per_pass(self)
    }

    fn set_tasks_per_pass(&mut self, tasks: usize) -> crate::error::Result<()> {
        super::MamlFamily::set_tasks_per_pass(self, tasks)
    }

    fn set_task_combiner(
        &mut self,
        combiner: Box<dyn crate::task_combiner::TaskGradientCombiner>,
    ) -> crate::error::Result<()> {
        super::MamlFamily::set_task_combiner(self, combiner);
        Ok(())
    }
}
