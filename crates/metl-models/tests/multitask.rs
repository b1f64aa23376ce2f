//! The multi-task architectures: parameter ownership follows the gradients (a parameter of
//! task `t` gets no gradient from any other task's loss), the shared representation depends
//! on shared parameters only, names and counts are as documented, and buffers of all
//! sub-networks are exposed.

mod common;

use common::{rand, var_store};
use metl_models::{
    conv4::Conv4Config,
    head::LinearHead,
    mlp::{Activation, Mlp, MlpConfig},
    multitask::{
        split_by_task, Cgc, CgcConfig, CrossStitch, CrossStitchConfig, DSelectK, DSelectKConfig, Mmoe,
        MmoeConfig, Mtan, MtanConfig, Ple, PleConfig, Routing,
    },
    BatchNormConfig, HardSharing, MultiTaskModel, Params,
};
use tch::{Kind, Tensor};

const K: Kind = Kind::Double;

fn mlp(widths: &[i64]) -> Mlp {
    MlpConfig::new(widths.to_vec()).with_activation(Activation::Tanh).build().unwrap()
}

fn heads(tasks: usize, features: i64) -> Vec<LinearHead> {
    (0..tasks).map(|t| LinearHead::new(features, 1 + t as i64).unwrap()).collect()
}

/// Checks ownership, the partition of the parameters, and the shared representation.
fn check_semantics<M: MultiTaskModel>(what: &str, model: &M, params: &Params, x: &Tensor) {
    let (shared, tasks) = split_by_task(model, params);
    assert_eq!(
        shared.len() + tasks.iter().map(Params::len).sum::<usize>(),
        params.len(),
        "{what}: partition"
    );
    assert!(tasks.iter().all(|t| !t.is_empty()), "{what}: every task owns parameters (at least its head)");
    let outputs = model.forward(params, x, true);
    for (u, y) in outputs.iter().enumerate() {
        let grads = params.grads(&y.sum(K), true).unwrap();
        for (name, g) in grads.iter() {
            if let Some(t) = model.task_of(name) {
                let norm = g.abs().max().double_value(&[]);
                assert!(
                    t == u || norm == 0.0,
                    "{what}: {name} belongs to task {t} but task {u}'s loss reaches it"
                );
            }
        }
    }
    // decode(encode(x)) is the forward pass.
    let z = model.encode(params, x, true);
    for (a, b) in model.decode(params, x, &z, true).iter().zip(&outputs) {
        assert!(a.allclose(b, 1e-12, 1e-12, false), "{what}: decode(encode(x)) differs from forward");
    }
    // A shared representation depends on no task parameter.
    if model.has_shared_representation() {
        let g = params.grads(&(&z * Tensor::randn_like(&z)).sum(K), false).unwrap();
        for (name, g) in g.iter() {
            if model.task_of(name).is_some() {
                assert_eq!(g.abs().max().double_value(&[]), 0.0, "{what}: z depends on {name}");
            }
        }
    }
}

#[test]
fn ownership_follows_gradients_for_every_architecture() {
    let vs = var_store(K);
    let x = rand(&[5, 4], K);
    let e = mlp(&[4, 6, 5]);
    let m = HardSharing::new(e.clone(), heads(2, 5));
    check_semantics("hard sharing", &m, &m.init(&vs.root().sub("a")).unwrap(), &x);
    let m = Mmoe::new(&e, heads(3, 5), &[4], MmoeConfig { num_experts: 3 }).unwrap();
    check_semantics("mmoe", &m, &m.init(&vs.root().sub("b")).unwrap(), &x);
    let m = Cgc::new(&e, heads(3, 5), &[4], CgcConfig { shared_experts: 2, task_experts: 2 }).unwrap();
    check_semantics("cgc", &m, &m.init(&vs.root().sub("c")).unwrap(), &x);
    for shared_gates in [true, false] {
        let m = Ple::new(&e, heads(3, 5), &[4], PleConfig { shared_gates, ..PleConfig::new(1, 2) }).unwrap();
        check_semantics("ple", &m, &m.init(&vs.root().sub(format!("d{shared_gates}"))).unwrap(), &x);
    }
    let m = CrossStitch::new(&e, heads(3, 5), CrossStitchConfig::default()).unwrap();
    check_semantics("cross-stitch", &m, &m.init(&vs.root().sub("e")).unwrap(), &x);
    let m = Mtan::new(e.clone(), heads(3, 5), &[4], MtanConfig::default()).unwrap();
    check_semantics("mtan", &m, &m.init(&vs.root().sub("f")).unwrap(), &x);
    for routing in [Routing::PerExample, Routing::Static] {
        let m = DSelectK::new(&e, heads(2, 5), &[4], DSelectKConfig { routing, ..DSelectKConfig::new(4, 2) })
            .unwrap();
        check_semantics("dselect-k", &m, &m.init(&vs.root().sub(format!("g{routing:?}"))).unwrap(), &x);
    }
}

#[test]
fn names_and_counts() {
    let vs = var_store(Kind::Float);
    let e = mlp(&[4, 6, 5]); // 4·6 + 6 + 6·5 + 5 = 65 parameters
    let m = Mmoe::new(&e, heads(2, 5), &[4], MmoeConfig { num_experts: 3 }).unwrap();
    let p = m.init(&vs.root().sub("mmoe")).unwrap();
    // 3 experts, 2 gates Linear(4, 3), heads Linear(5, 1) and Linear(5, 2).
    assert_eq!(p.numel(), 3 * 65 + 2 * (4 * 3 + 3) + 6 + 12);
    assert!(p.get("experts_shared.2.layers.1.bias").is_some() && p.get("gate_specific.1.0.weight").is_some());
    let m = Ple::new(&e, heads(2, 5), &[4], PleConfig::new(1, 1)).unwrap();
    let p = m.init(&vs.root().sub("ple")).unwrap();
    assert_eq!(m.levels(), 2);
    // Task gates over 2 experts at inputs 4 and 6; one shared gate over 3 experts at input 4.
    assert_eq!(p["gate_specific.1.1.0.weight"].size(), [2, 6]);
    assert_eq!(p["gate_shared.0.0.weight"].size(), [3, 4]);
    assert!(p.get("gate_shared.1.0.weight").is_none());
    let m = CrossStitch::new(&e, heads(2, 5), CrossStitchConfig::default()).unwrap();
    let p = m.init(&vs.root().sub("cs")).unwrap();
    let unit = Tensor::from_slice2(&[[0.9f32, 0.1], [0.1, 0.9]]).to_device(common::device());
    assert!(p["cross_unit"].get(0).allclose(&unit, 1e-7, 1e-7, false));
    assert!(p.get("columns.1.layers.0.weight").is_some());
    let m = DSelectK::new(&e, heads(2, 5), &[4], DSelectKConfig::new(5, 2)).unwrap();
    let p = m.init(&vs.root().sub("dsk")).unwrap();
    // k = 2 selectors of m = 3 bits.
    assert_eq!(p["z_logits.0.weight"].size(), [6, 4]);
    assert!(p["z_logits.0.weight"].abs().max().double_value(&[]) <= 0.01);
}

#[test]
fn dselect_k_gates_are_mixtures_and_regularised() {
    let vs = var_store(K);
    let e = mlp(&[4, 5]);
    let m = DSelectK::new(
        &e,
        heads(1, 5),
        &[4],
        DSelectKConfig { routing: Routing::Static, ..DSelectKConfig::new(4, 1) },
    )
    .unwrap();
    let p = m.init(&vs.root()).unwrap();
    // Push the single selector's bits to (1, 0): expert 0b10 = 2 alone.
    tch::no_grad(|| {
        p["z_logits.0"].shallow_clone().copy_(&Tensor::from_slice(&[5.0f64, -5.0]).view([1, 1, 2]))
    });
    let x = rand(&[3, 4], K);
    let z = m.encode(&p, &x, true);
    let y = m.decode(&p, &x, &z, true);
    let head = p.sub("decoders.0");
    let expected = z.get(2).linear(&head["weight"], Some(&head["bias"]));
    assert!(y[0].allclose(&expected, 1e-12, 1e-12, false));
    // A power of two: only the entropy term, which is 0 for a one-hot selector.
    assert!(m.auxiliary_loss(&p, &x).unwrap().double_value(&[]).abs() < 1e-9);
}

#[test]
fn sub_network_buffers_are_exposed_with_prefixes() {
    let vs = var_store(Kind::Float);
    let backbone =
        Conv4Config::new(1).with_hidden(4).with_batch_norm(BatchNormConfig::running()).build().unwrap();
    let m = Mmoe::new(&backbone, heads(2, 4), &[1, 28, 28], MmoeConfig { num_experts: 2 }).unwrap();
    let p = m.init(&vs.root()).unwrap();
    let _ = m.forward(&p, &rand(&[3, 1, 28, 28], Kind::Float), true);
    let buffers = m.buffers();
    assert_eq!(buffers["experts_shared.1.blocks.3.bn.num_batches_tracked"].int64_value(&[]), 1);
    // Experts are independent copies: their running statistics differ.
    let a = &buffers["experts_shared.0.blocks.0.bn.running_mean"];
    let b = &buffers["experts_shared.1.blocks.0.bn.running_mean"];
    assert!(!a.allclose(b, 0.0, 0.0, false));
    let m2 = Mmoe::new(&backbone, heads(2, 4), &[1, 28, 28], MmoeConfig { num_experts: 2 }).unwrap();
    m2.load_buffers(&buffers).unwrap();
    assert!(m2.buffers()["experts_shared.1.blocks.0.bn.running_mean"].allclose(b, 0.0, 0.0, false));
    let mtan = Mtan::new(backbone.clone(), heads(2, 4), &[1, 28, 28], MtanConfig::default()).unwrap();
    let _ = mtan.init(&vs.root().sub("mtan")).unwrap();
    let names = mtan.buffers();
    assert!(names.get("backbone.blocks.0.bn.running_var").is_some());
    assert!(names.get("attention.1.3.4.running_mean").is_some());
    assert!(names.get("block_att.2.1.num_batches_tracked").is_some());
}

#[test]
fn bad_configurations_are_rejected_with_their_field() {
    let e = mlp(&[4, 5]);
    let err = |r: Result<(), metl_models::ModelError>| r.unwrap_err().to_string();
    assert!(err(Mmoe::new(&e, heads(2, 5), &[4], MmoeConfig { num_experts: 0 }).map(|_| ()))
        .contains("mmoe.num_experts"));
    assert!(err(Mmoe::new(&e, Vec::<LinearHead>::new(), &[4], MmoeConfig { num_experts: 1 }).map(|_| ()))
        .contains("mmoe.heads"));
    assert!(err(
        Cgc::new(&e, heads(2, 5), &[0], CgcConfig { shared_experts: 1, task_experts: 1 }).map(|_| ())
    )
    .contains("cgc.input_shape"));
    assert!(
        err(Ple::new(&e, heads(2, 5), &[3], PleConfig::new(1, 1)).map(|_| ())).contains("mlp input shape")
    );
    let cs = CrossStitchConfig { alpha_same: 1.5 };
    assert!(err(CrossStitch::new(&e, heads(2, 5), cs).map(|_| ())).contains("cross_stitch.alpha_same"));
    let dk = DSelectKConfig { gamma: 0.0, ..DSelectKConfig::new(4, 2) };
    assert!(err(DSelectK::new(&e, heads(2, 5), &[4], dk).map(|_| ())).contains("dselect_k.gamma"));
}
