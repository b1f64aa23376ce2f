//! A Conv4 checkpoint written by metl loads in PyTorch (`safetensors.torch.load_file` and
//! `load_state_dict(strict=True)` into a `torch.nn` re-implementation, `conv4_torch.py`)
//! and gives the same outputs, with running statistics and with batch statistics; PyTorch's
//! own training-mode passes from the same initial state update the running statistics to
//! metl's values; and the checkpoint loads back into metl.
//!
//! Needs `METL_PYTHON` (set by `cargo xtask env`); skipped with a printed reason without it.
//! Runs on the CPU: the comparison is about names, shapes and semantics.

use metl_models::{conv4::Conv4Config, head::LinearHead, BatchNormConfig, Classifier, Model, Params};
use std::{path::PathBuf, process::Command};
use tch::{nn, Device, Kind, Tensor};

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("metl-models-torch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn conv4_checkpoint_loads_in_pytorch_with_the_same_outputs() {
    let Some(python) = std::env::var_os("METL_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!(
            "skipped: METL_PYTHON is not set (run `eval \"$(cargo xtask env)\"` to compare with PyTorch)"
        );
        return;
    };
    let (c_in, hidden, classes, warmups) = (3i64, 8i64, 5i64, 2i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let backbone = Conv4Config::new(c_in)
        .with_hidden(hidden)
        .with_batch_norm(BatchNormConfig::running())
        .build()
        .unwrap();
    let features = backbone.feature_dim(84, 84).unwrap();
    let net = Classifier::new(backbone, LinearHead::new(features, classes).unwrap());
    let params = net.init(&vs.root()).unwrap();
    let dir = scratch_dir();
    let initial = dir.join("initial.safetensors");
    net.state_dict(&params).unwrap().save_safetensors(&initial).unwrap();
    let warmup: Vec<Tensor> =
        (0..warmups).map(|_| Tensor::rand([6, c_in, 84, 84], (Kind::Float, Device::Cpu)) * 2.0).collect();
    for batch in &warmup {
        let _ = net.forward(&params, batch, true);
    }
    let checkpoint = dir.join("conv4.safetensors");
    net.state_dict(&params).unwrap().save_safetensors(&checkpoint).unwrap();
    let x = Tensor::rand([4, c_in, 84, 84], (Kind::Float, Device::Cpu));
    let y_eval = tch::no_grad(|| net.forward(&params, &x, false));
    let y_train = tch::no_grad(|| net.forward(&params, &x, true));
    let io = dir.join("io.safetensors");
    let config = Tensor::from_slice(&[c_in, hidden, classes, warmups]);
    let mut entries = vec![
        ("x".to_owned(), x.shallow_clone()),
        ("y_eval".to_owned(), y_eval.shallow_clone()),
        ("y_train".to_owned(), y_train),
        ("config".to_owned(), config),
    ];
    entries.extend(warmup.iter().enumerate().map(|(i, b)| (format!("warmup_{i}"), b.shallow_clone())));
    Tensor::write_safetensors(&entries, &io).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conv4_torch.py");
    let output = Command::new(&python).arg(&script).arg(&checkpoint).arg(&io).arg(&initial).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "PyTorch disagrees: {stdout}{stderr}");

    // The checkpoint loads back into a fresh metl model and gives the same outputs.
    let vs2 = nn::VarStore::new(Device::Cpu);
    let fresh = net.clone();
    let params2 = fresh.init(&vs2.root()).unwrap();
    let loaded = Params::load_safetensors(&checkpoint, Device::Cpu).unwrap();
    params2.copy_from(&loaded).unwrap();
    fresh.load_buffers(&loaded).unwrap();
    let y2 = tch::no_grad(|| fresh.forward(&params2, &x, false));
    assert!(y2.allclose(&y_eval, 0.0, 0.0, false));
    let _ = std::fs::remove_dir_all(&dir);
}
