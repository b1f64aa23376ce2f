//! A PyTorch model exported as TorchScript with its parameters as inputs
//! (`torchscript_export.py`) runs in metl as a [`ScriptModel`]: the same outputs as PyTorch
//! at its own and at other parameters, and second-order gradients through a differentiable
//! SGD step that match finite differences.
//!
//! Needs `METL_PYTHON` (set by `cargo xtask env`); skipped with a printed reason without it.

use metl_models::{
    gradcheck::{check_gradients, GradCheckConfig},
    torchscript::ScriptModel,
    Model, Params,
};
use std::{path::PathBuf, process::Command};
use tch::{nn, Device, Kind, Reduction, Tensor};

fn export() -> Option<PathBuf> {
    let Some(python) = std::env::var_os("METL_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!(
            "skipped: METL_PYTHON is not set (run `eval \"$(cargo xtask env)\"` to export with PyTorch)"
        );
        return None;
    };
    let dir = std::env::temp_dir().join(format!("metl-models-torchscript-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/torchscript_export.py");
    let status = Command::new(python).arg(script).arg(&dir).status().unwrap();
    assert!(status.success(), "torchscript_export.py failed");
    Some(dir)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn a_torchscript_model_runs_on_any_parameters_with_second_order_gradients() {
    let Some(dir) = export() else { return };
    let model = ScriptModel::load(dir.join("model.pt"), Device::Cpu).unwrap();
    let expected = Params::load_safetensors(dir.join("expected.safetensors"), Device::Cpu).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    let theta = model.init(&vs.root()).unwrap();
    assert_eq!(
        theta.names(),
        [
            "model.0.weight",
            "model.0.bias",
            "model.2.weight",
            "model.2.bias",
            "model.4.weight",
            "model.4.bias"
        ]
    );
    assert_eq!(vs.trainable_variables().len(), 6);

    let x = &expected["x"];
    assert!(max_diff(&model.forward(&theta, x, true), &expected["y"]) < 1e-12);
    let moved = theta.map(|name, t| t + &expected[format!("delta.{name}").as_str()]);
    assert!(max_diff(&model.forward(&moved, x, true), &expected["y_moved"]) < 1e-12);

    // MAML's meta-objective through the TorchScript graph: query loss after one
    // differentiable SGD step on the support loss.
    let target = x.sin();
    let loss = |p: &Params| model.forward(p, x, true).mse_loss(&target, Reduction::Mean);
    let meta_loss = |theta: &Params| {
        let grads = theta.grads(&loss(theta), true).unwrap();
        loss(&theta.sgd(&grads, 0.5).unwrap())
    };
    let report = check_gradients(&theta, meta_loss, &GradCheckConfig::default()).unwrap();
    assert!(report.is_close(1e-6, 1e-9), "{report}");

    // A parameter set without one of the module's names is an error, not a crash.
    let partial = theta.filter(|n| n != "model.4.bias");
    let err = model.f_forward(&partial, x).unwrap_err().to_string();
    assert!(err.contains("model.4.bias"), "{err}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let err = ScriptModel::load("/nonexistent/model.pt", Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/model.pt"), "{err}");
}
