//! Data-parallel meta-training equals one process on the whole meta-batch: two processes
//! on loopback (c10d Gloo), each stepping on its half of every meta-batch, end with the
//! state (meta-parameters, learned rates, optimizer moments, step count) of one process
//! stepping on the whole meta-batches — for MAML (second and first order, and with a task
//! combiner that normalises the per-task meta-gradients: it sees the whole meta-batch's
//! `J` on every rank), Meta-SGD, ANIL,
//! Reptile, iMAML, CAVIA, prototypical and matching networks, MetaOptNet (SVM and ridge),
//! and the fine-tuning baseline (whose pre-training batches are split by rows).
//!
//! The test binary starts itself twice more with `METL_META_DP_OUT` set; the `workers`
//! test then runs the ranks' side (without the variable it does nothing).
use metl_data::TaskBatch;
use metl_dist::{launch_local, Backend, Collective, DistConfig, LocalLaunch, ProcessGroup};
use metl_meta::{
    anil::{Anil, AnilConfig},
    baseline::{Baseline, BaselineConfig},
    cavia::{Cavia, CaviaConfig},
    imaml::{IMaml, IMamlConfig},
    maml::{Maml, MamlConfig},
    matching::{MatchingNet, MatchingNetConfig},
    meta_sgd::{MetaSgd, MetaSgdConfig},
    metaoptnet::{BaseLearner, MetaOptNet, MetaOptNetConfig, RidgeConfig},
    protonet::{ProtoNet, ProtoNetConfig},
    reptile::{Reptile, ReptileConfig},
    MetaLearner,
};
use metl_models::{mlp::MlpConfig, Params, TaskLoss};
use std::{path::Path, process::Command, sync::Arc, time::Duration};
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::NormalisedMean;

const OUT: &str = "METL_META_DP_OUT";
const STEPS: u64 = 3;
const TASKS: i64 = 4;
const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// How a learner's batches are shared among ranks.
#[derive(Clone, Copy)]
enum Shard {
    /// Along the tasks (episodes) of the meta-batch.
    Tasks,
    /// Along the rows of a one-batch pre-training batch (the baseline).
    Rows,
}

#[derive(Clone, Copy)]
enum Data {
    Regression,
    Episodes,
}

type Entry = (&'static str, Box<dyn MetaLearner>, Data, Shard);

/// Every learner under test, initialised from a fixed seed on float64 MLPs.
fn learners() -> Vec<Entry> {
    tch::manual_seed(7);
    let mlp = |sizes: Vec<i64>| {
        let mut vs = nn::VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let (mlp, theta) = MlpConfig::new(sizes).init(&vs.root()).unwrap();
        (vs, mlp, theta)
    };
    let mut out: Vec<Entry> = Vec::new();
    let (vs, m, t) = mlp(vec![1, 8, 1]);
    let config = MamlConfig { inner_steps: 2, inner_lr: 0.05, ..MamlConfig::default() };
    out.push((
        "maml",
        Box::new(Maml::new(m, t, &vs, TaskLoss::Mse, config).unwrap()),
        Data::Regression,
        Shard::Tasks,
    ));
    let (vs, m, t) = mlp(vec![1, 8, 1]);
    let config = MamlConfig { inner_steps: 2, inner_lr: 0.05, ..MamlConfig::default() };
    let mut combined = Maml::new(m, t, &vs, TaskLoss::Mse, config).unwrap();
    combined
        .set_task_combiner(Box::new(NormalisedMean { steps: 0, expect_tasks: Some(TASKS as usize) }))
        .unwrap();
    out.push(("maml_combined", Box::new(combined), Data::Regression, Shard::Tasks));
    let (vs, m, t) = mlp(vec![1, 8, 1]);
    let config = MamlConfig { first_order: true, ..MamlConfig::default() };
    out.push((
        "fomaml",
        Box::new(Maml::new(m, t, &vs, TaskLoss::Mse, config).unwrap()),
        Data::Regression,
        Shard::Tasks,
    ));
    let (_vs, m, t) = mlp(vec![1, 8, 1]);
    let meta_sgd = MetaSgd::new(m, t, TaskLoss::Mse, MetaSgdConfig::default()).unwrap();
    out.push(("meta_sgd", Box::new(meta_sgd), Data::Regression, Shard::Tasks));
    let (_vs, m, t) = mlp(vec![1, 8, 1]);
    let reptile = Reptile::new(m, t, TaskLoss::Mse, ReptileConfig::default()).unwrap();
    out.push(("reptile", Box::new(reptile), Data::Regression, Shard::Tasks));
    let (_vs, m, t) = mlp(vec![1, 8, 1]);
    let config = IMamlConfig { inner_steps: 3, cg_steps: 2, ..IMamlConfig::default() };
    out.push((
        "imaml",
        Box::new(IMaml::new(m, t, TaskLoss::Mse, config).unwrap()),
        Data::Regression,
        Shard::Tasks,
    ));
    let (_vs, m, t) = mlp(vec![3, 8, 1]);
    let config = CaviaConfig { context_params: 2, inner_steps: 2, ..CaviaConfig::default() };
    out.push((
        "cavia",
        Box::new(Cavia::new(m, t, TaskLoss::Mse, config).unwrap()),
        Data::Regression,
        Shard::Tasks,
    ));
    let (_vs, m, t) = mlp(vec![4, 6, 3]);
    let config = AnilConfig { head: vec!["layers.1".into()], ..AnilConfig::default() };
    out.push((
        "anil",
        Box::new(Anil::new(m, t, TaskLoss::CrossEntropy, config).unwrap()),
        Data::Episodes,
        Shard::Tasks,
    ));
    let (_vs, m, t) = mlp(vec![4, 6, 4]);
    out.push((
        "protonet",
        Box::new(ProtoNet::new(m, t, ProtoNetConfig::default()).unwrap()),
        Data::Episodes,
        Shard::Tasks,
    ));
    let (_vs, m, t) = mlp(vec![4, 6, 4]);
    let matching = MatchingNet::new(m, t, MatchingNetConfig::default()).unwrap();
    out.push(("matching", Box::new(matching), Data::Episodes, Shard::Tasks));
    let (_vs, m, t) = mlp(vec![4, 6, 4]);
    let metaoptnet = MetaOptNet::new(m, t, MetaOptNetConfig::default()).unwrap();
    out.push(("metaoptnet", Box::new(metaoptnet), Data::Episodes, Shard::Tasks));
    let (_vs, m, t) = mlp(vec![4, 6, 4]);
    let config = MetaOptNetConfig { head: BaseLearner::Ridge(RidgeConfig::default()), ..Default::default() };
    let ridge = MetaOptNet::new(m, t, config).unwrap();
    out.push(("metaoptnet_ridge", Box::new(ridge), Data::Episodes, Shard::Tasks));
    let (_vs, m, t) = mlp(vec![4, 6, 4]);
    let baseline = Baseline::new(m, t, 4, 3, BaselineConfig::default()).unwrap();
    out.push(("baseline", Box::new(baseline), Data::Episodes, Shard::Rows));
    out
}

/// Meta-batch `step` of `data`: 4 regression tasks (5 support, 3 query points) or 4
/// three-way episodes of 4 features (2 shots, 2 queries); a function of `step` only.
fn batch(data: Data, step: u64) -> TaskBatch {
    tch::manual_seed(1000 + step as i64);
    match data {
        Data::Regression => TaskBatch {
            support_x: Tensor::randn([TASKS, 5, 1], F64),
            support_y: Tensor::randn([TASKS, 5, 1], F64),
            query_x: Tensor::randn([TASKS, 3, 1], F64),
            query_y: Tensor::randn([TASKS, 3, 1], F64),
        },
        Data::Episodes => {
            // 0, 1, 2, 0, 1, 2: each half of the rows holds every class (the baseline's shards).
            let labels = Tensor::arange(3, (Kind::Int64, Device::Cpu)).repeat([TASKS, 2]);
            TaskBatch {
                support_x: Tensor::randn([TASKS, 6, 4], F64),
                support_y: labels.shallow_clone(),
                query_x: Tensor::randn([TASKS, 6, 4], F64),
                query_y: labels,
            }
        }
    }
}

/// Rank `rank`'s equal share of `batch`.
fn shard(batch: &TaskBatch, how: Shard, rank: usize, world: usize) -> TaskBatch {
    match how {
        Shard::Tasks => {
            let per = batch.num_tasks() / world;
            batch.tasks(rank * per, per)
        }
        Shard::Rows => {
            let rows = batch.support_x.size()[1] / world as i64;
            let part = |t: &Tensor| t.narrow(1, rank as i64 * rows, rows);
            TaskBatch {
                support_x: part(&batch.support_x),
                support_y: part(&batch.support_y),
                query_x: batch.query_x.shallow_clone(),
                query_y: batch.query_y.shallow_clone(),
            }
        }
    }
}

/// Trains every learner for `STEPS` steps as rank `rank` of `collective`'s group.
fn train(collective: Arc<dyn Collective>) -> Vec<(&'static str, Params)> {
    let (rank, world) = (collective.rank(), collective.world_size());
    let mut states = Vec::new();
    for (name, mut learner, data, how) in learners() {
        learner.set_collective(Arc::clone(&collective)).unwrap();
        for step in 0..STEPS {
            let whole = batch(data, step);
            learner
                .meta_train_step(&shard(&whole, how, rank, world))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        states.push((name, learner.state()));
    }
    states
}

/// The ranks' side (a no-op in a normal test run).
#[test]
fn workers() {
    let Ok(out) = std::env::var(OUT) else { return };
    let config = DistConfig::from_env().unwrap().expect("launched with WORLD_SIZE");
    let group: Arc<dyn Collective> = Arc::new(ProcessGroup::new(&config, Backend::Gloo).unwrap());
    for (name, state) in train(Arc::clone(&group)) {
        state
            .save_safetensors(Path::new(&out).join(format!("{name}.rank{}.safetensors", group.rank())))
            .unwrap();
    }
}

#[test]
fn two_ranks_end_where_one_process_on_the_whole_meta_batch_ends() {
    let out = std::env::temp_dir().join(format!("metl-meta-dp-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut launch = LocalLaunch::new(2);
    launch.threads_per_process = Some(1);
    launch.grace = Duration::from_secs(30);
    launch_local(&launch, |_| {
        let mut cmd = Command::new(&exe);
        cmd.args(["workers", "--exact", "--test-threads=1"]).env(OUT, &out).env("METL_DIST_TIMEOUT", "60");
        cmd
    })
    .unwrap();
    let single = train(Arc::new(metl_dist::Local));
    for (name, expected) in &single {
        for rank in 0..2 {
            let path = out.join(format!("{name}.rank{rank}.safetensors"));
            let got = Params::load_safetensors(&path, Device::Cpu).unwrap();
            let sorted = |p: &Params| {
                let mut names = p.names().to_vec();
                names.sort();
                names
            };
            assert_eq!(sorted(&got), sorted(expected), "{name}");
            for (key, e) in expected.names().iter().zip(expected.tensors()) {
                let (g, e) = (got[key.as_str()].to_kind(Kind::Double), e.to_kind(Kind::Double));
                let scale = 1.0 + e.abs().max().double_value(&[]);
                let diff = (&g - &e).abs().max().double_value(&[]);
                assert!(
                    diff <= 1e-10 * scale,
                    "{name} rank {rank}: {key} differs by {diff:e} (scale {scale})"
                );
            }
        }
    }
    // The steps moved the parameters: the comparison is not between untouched copies.
    let fresh = learners();
    for ((name, trained), (_, learner, _, _)) in single.iter().zip(&fresh) {
        let before = learner.state();
        let moved = before
            .tensors()
            .iter()
            .zip(trained.tensors())
            .any(|(a, b)| a.kind() == Kind::Double && (a - b).abs().max().double_value(&[]) > 1e-6);
        assert!(moved, "{name}: {STEPS} steps left the state unchanged");
    }
    let _ = std::fs::remove_dir_all(&out);
}
