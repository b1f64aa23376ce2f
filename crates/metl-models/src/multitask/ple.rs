//! Progressive Layered Extraction (Tang et al., RecSys 2020, "Progressive Layered Extraction
//! (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations").

use super::{
    cgc::check_expert_counts,
    decoder_task,
    experts::{check_heads, input_size, mix, ExpertGroups, Gate},
    heads, indexed, MultiTaskModel,
};
use crate::{error::Result, params::ParamsBuilder, staged::StagedModel, Mode, Model, Params};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// Configuration of [`Ple`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PleConfig {
    /// The number of shared experts per level `E_s` (>= 1).
    pub shared_experts: usize,
    /// The number of experts of each task per level `E_t` (>= 1).
    pub task_experts: usize,
    /// The paper's shared gates, which mix all experts of a level into the input of the next
    /// level's shared experts (default true). Without them, as in LibMTL, the shared experts
    /// of each level run on every task's path separately.
    #[serde(default = "yes")]
    pub shared_gates: bool,
}

fn yes() -> bool {
    true
}

impl PleConfig {
    /// The paper's PLE with these expert counts.
    pub fn new(shared_experts: usize, task_experts: usize) -> Self {
        Self { shared_experts, task_experts, shared_gates: true }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        check_expert_counts("ple.shared_experts", "ple.task_experts", self.shared_experts, self.task_experts)
    }
}

/// PLE: a stack of CGC levels, one per stage of a [`StagedModel`] backbone. Every expert is
/// a copy of the backbone; at level `l` it runs its stage `l`. With inputs `g⁰_t = g⁰_s = x`,
///
/// ```text
/// E^l_s = [stage_l(f^s_e, g^l_s)]_e,   E^l_t = [stage_l(f^t_e, g^l_t)]_e
/// g^{l+1}_t = Σ_e softmax(W^l_t g^l_t + b^l_t)_e [E^l_s, E^l_t]_e
/// g^{l+1}_s = Σ_e softmax(W^l_s g^l_s + b^l_s)_e [E^l_s, E^l_1, …, E^l_T]_e   (l < L − 1)
/// ŷ_t = h_t(finish(g^L_t))
/// ```
///
/// (gates see their input flattened). Parameters: `experts_shared.{e}.*`,
/// `experts_specific.{t}.{e}.*`, `gate_specific.{t}.{l}.0.{weight,bias}`,
/// `gate_shared.{l}.0.{weight,bias}` (`l < L − 1`), `decoders.{t}.*`.
///
/// Ownership follows the gradients: with shared gates, task experts and the task gates of
/// all but the last level feed the shared path and hence every task, so only the last
/// level's task gates and the heads belong to a task; without them (LibMTL's variant), the
/// task experts and gates belong to their task. There is no shared representation: `encode`
/// returns the stacked `finish(g^L_t)` `[T, B, F]`.
#[derive(Debug, Clone)]
pub struct Ple<E, H> {
    experts: ExpertGroups<E>,
    task_gates: Vec<Vec<Gate>>,
    shared_gates: Vec<Gate>,
    heads: Vec<H>,
    levels: usize,
}

impl<E: StagedModel + Clone, H: Model> Ple<E, H> {
    /// PLE with copies of the staged backbone `expert`, one head per task, for inputs of
    /// per-sample shape `input_shape`.
    pub fn new(expert: &E, heads: Vec<H>, input_shape: &[i64], config: PleConfig) -> Result<Self> {
        config.validate()?;
        check_heads("ple.heads", heads.len())?;
        let tasks = heads.len();
        let levels = expert.num_stages();
        let mut level_inputs = vec![input_size("ple.input_shape", input_shape)?];
        level_inputs.extend(expert.stage_shapes(input_shape)?.iter().map(|s| s.iter().product::<i64>()));
        let (es, et) = (config.shared_experts, config.task_experts);
        let task_gates = (0..tasks)
            .map(|t| {
                (0..levels)
                    .map(|l| Gate::new(&format!("gate_specific.{t}.{l}"), level_inputs[l], es + et))
                    .collect()
            })
            .collect();
        let shared_gates = if config.shared_gates {
            (0..levels.saturating_sub(1))
                .map(|l| Gate::new(&format!("gate_shared.{l}"), level_inputs[l], es + tasks * et))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            experts: ExpertGroups::new(expert, es, et, tasks),
            task_gates,
            shared_gates,
            heads,
            levels,
        })
    }

    /// The number of levels `L` (the backbone's stages).
    pub fn levels(&self) -> usize {
        self.levels
    }

    fn finish(&self, h: &Tensor) -> Tensor {
        self.experts.shared.first().expect("at least one shared expert").finish(h)
    }
}

fn shallow(tensors: &[Tensor]) -> Vec<Tensor> {
    tensors.iter().map(Tensor::shallow_clone).collect()
}

impl<E: StagedModel + Clone, H: Model> MultiTaskModel for Ple<E, H> {
    fn num_tasks(&self) -> usize {
        self.heads.len()
    }

    fn init(&self, path: &nn::Path<'_>) -> Result<Params> {
        let params = self.experts.init(path)?;
        let mut builder = ParamsBuilder::new(path);
        for gate in self.task_gates.iter().flatten().chain(&self.shared_gates) {
            gate.init(&mut builder)?;
        }
        params.merge(&builder.build()?)?.merge(&heads::init(&self.heads, path)?)
    }

    fn task_of(&self, name: &str) -> Option<usize> {
        if let Some(t) = decoder_task(name) {
            return Some(t);
        }
        let shared_path = !self.shared_gates.is_empty();
        if let Some(t) = indexed(name, "gate_specific") {
            let level = indexed(name, &format!("gate_specific.{t}"));
            return (!shared_path || level == Some(self.levels - 1)).then_some(t);
        }
        indexed(name, "experts_specific").filter(|_| !shared_path)
    }

    fn has_shared_representation(&self) -> bool {
        false
    }

    fn encode(&self, params: &Params, x: &Tensor, train: bool) -> Tensor {
        let mode = Mode::new(train, 0);
        let tasks = self.heads.len();
        let mut task_inputs: Vec<Tensor> = (0..tasks).map(|_| x.shallow_clone()).collect();
        let mut shared_input = x.shallow_clone();
        for l in 0..self.levels {
            let shared_on = |h: &Tensor| self.experts.shared.forward_stage(params, l, h, mode);
            let shared_out = if self.shared_gates.is_empty() { Vec::new() } else { shared_on(&shared_input) };
            let mut all_task_out = Vec::new();
            let mut next = Vec::with_capacity(tasks);
            for (t, input) in task_inputs.iter().enumerate() {
                let own = self.experts.specific[t].forward_stage(params, l, input, mode);
                let mut candidates =
                    if self.shared_gates.is_empty() { shared_on(input) } else { shallow(&shared_out) };
                candidates.extend(shallow(&own));
                next.push(mix(&Tensor::stack(&candidates, 0), &self.task_gates[t][l].weights(params, input)));
                all_task_out.extend(own);
            }
            if l + 1 < self.levels && !self.shared_gates.is_empty() {
                let mut candidates = shared_out;
                candidates.extend(all_task_out);
                shared_input =
                    mix(&Tensor::stack(&candidates, 0), &self.shared_gates[l].weights(params, &shared_input));
            }
            task_inputs = next;
        }
        Tensor::stack(&task_inputs.iter().map(|g| self.finish(g)).collect::<Vec<_>>(), 0)
    }

    fn decode(&self, params: &Params, _x: &Tensor, z: &Tensor, train: bool) -> Vec<Tensor> {
        (0..self.heads.len())
            .map(|t| heads::forward(&self.heads, params, t, &z.get(t as i64), train))
            .collect()
    }

    fn buffers(&self) -> Params {
        self.experts.buffers().merge(&heads::buffers(&self.heads)).expect("prefixes keep names apart")
    }

    fn load_buffers(&self, buffers: &Params) -> Result<()> {
        self.experts.load_buffers(buffers)?;
        heads::load_buffers(&self.heads, buffers)
    }
}
