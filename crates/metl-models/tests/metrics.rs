//! Task metrics against values computed by hand: accuracy of classes and binary logits,
//! regression errors, mIoU and pixel accuracy of a small segmentation with an ignored
//! pixel, depth errors over valid pixels, normal angles and their median, and accumulation
//! over several batches.

use metl_models::{
    metrics::{metric_info, TaskMetrics, METRICS},
    TaskLoss,
};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

fn values(m: &TaskMetrics) -> HashMap<&'static str, f64> {
    m.values().unwrap().into_iter().collect()
}

fn t(values: &[f64], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values).view(shape)
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

#[test]
fn segmentation_by_hand() {
    // Three classes, a 2×3 image: labels [[0, 0, 1], [1, −1, 2]], predictions (argmax of the
    // one-hot logits) [[0, 1, 1], [1, 2, 0]]. Labelled pixels: 5, of which 3 right.
    // Confusion (rows = labels): class 0: {0: 1, 1: 1}; class 1: {1: 2}; class 2: {0: 1}.
    // IoU_0 = 1 / (2 + 2 − 1) = 1/3, IoU_1 = 2 / (2 + 3 − 2) = 2/3, IoU_2 = 0 / (1 + 0 − 0) = 0
    // (the prediction 2 on the ignored pixel does not count).
    let labels = Tensor::from_slice(&[0i64, 0, 1, 1, -1, 2]).view([1, 2, 3]);
    let predicted = Tensor::from_slice(&[0i64, 1, 1, 1, 2, 0]).view([1, 2, 3]);
    let logits = predicted.one_hot(3).permute([0, 3, 1, 2]).to_kind(Kind::Float);
    let mut m = TaskMetrics::new(TaskLoss::SegmentationCrossEntropy);
    m.update(&logits, &labels).unwrap();
    let v = values(&m);
    close(v["miou"], (1.0 / 3.0 + 2.0 / 3.0 + 0.0) / 3.0);
    close(v["pixel_accuracy"], 3.0 / 5.0);
    // A second batch is added to the same confusion matrix: a perfect class-2 image.
    let twos = Tensor::full([1, 2, 3], 2, (Kind::Int64, Device::Cpu));
    m.update(&twos.one_hot(3).permute([0, 3, 1, 2]).to_kind(Kind::Float), &twos).unwrap();
    let v = values(&m);
    close(v["pixel_accuracy"], 9.0 / 11.0);
    // IoU_2 = 6 / (7 + 6 − 6); classes 0 and 1 unchanged.
    close(v["miou"], (1.0 / 3.0 + 2.0 / 3.0 + 6.0 / 7.0) / 3.0);
    // A class absent from labels and predictions is left out of the mean.
    let mut four = TaskMetrics::new(TaskLoss::SegmentationCrossEntropy);
    four.update(&twos.one_hot(4).permute([0, 3, 1, 2]).to_kind(Kind::Float), &twos).unwrap();
    close(values(&four)["miou"], 1.0);
}

#[test]
fn depth_and_normals_over_valid_pixels() {
    // Targets 2, 0 (none), 4, 1; predictions 3, 7, 3, 1: |errors| 1, 1, 0 → abs 2/3,
    // rel (1/2 + 1/4 + 0)/3 = 0.25.
    let mut depth = TaskMetrics::new(TaskLoss::DepthL1);
    depth.update(&t(&[3.0, 7.0, 3.0, 1.0], &[1, 1, 2, 2]), &t(&[2.0, 0.0, 4.0, 1.0], &[1, 1, 2, 2])).unwrap();
    let v = values(&depth);
    close(v["abs_error"], 2.0 / 3.0);
    close(v["rel_error"], 0.25);

    // Five pixels, target z everywhere but the last (none); predictions at 0°, 10°, 20°,
    // 40° from z (in the xz plane, unnormalised lengths) and anything on the last.
    let angles = [0.0f64, 10.0, 20.0, 40.0];
    let mut p = vec![0.0; 15];
    let mut y = vec![0.0; 15];
    for (i, a) in angles.iter().enumerate() {
        let r = a.to_radians();
        p[i] = 3.0 * r.sin(); // x
        p[10 + i] = 3.0 * r.cos(); // z
        y[10 + i] = 1.0;
    }
    p[4] = 1.0;
    let mut normals = TaskMetrics::new(TaskLoss::NormalCosine);
    normals.update(&t(&p, &[1, 3, 1, 5]), &t(&y, &[1, 3, 1, 5])).unwrap();
    let v = values(&normals);
    close(v["mean_angle"], 17.5);
    // The median of 0, 10, 20, 40 is 15, to the histogram's 0.001° bins.
    assert!((v["median_angle"] - 15.0).abs() <= 0.001, "{}", v["median_angle"]);
    close(v["within_11.25"], 0.5);
    close(v["within_22.5"], 0.75);
    close(v["within_30"], 0.75);
}

#[test]
fn classification_binary_and_regression() {
    let mut classes = TaskMetrics::new(TaskLoss::CrossEntropy);
    let logits = t(&[2.0, 1.0, 0.0, 3.0, 0.0, 1.0, 5.0, 0.0, 0.0], &[3, 3]);
    classes.update(&logits, &Tensor::from_slice(&[0i64, 2, 1])).unwrap();
    let v = values(&classes);
    close(v["accuracy"], 1.0 / 3.0);
    close(v["error"], 2.0 / 3.0);
    let mut binary = TaskMetrics::new(TaskLoss::BinaryCrossEntropy);
    binary.update(&t(&[0.3, -2.0, 4.0, -0.1], &[4, 1]), &t(&[1.0, 0.0, 0.0, 1.0], &[4, 1])).unwrap();
    close(values(&binary)["error"], 0.5);
    let mut regression = TaskMetrics::new(TaskLoss::Mse);
    regression.update(&t(&[1.0, 2.0], &[2, 1]), &t(&[0.0, 4.0], &[2, 1])).unwrap();
    regression.update(&t(&[1.0], &[1, 1]), &t(&[1.0], &[1, 1])).unwrap();
    let v = values(&regression);
    close(v["mse"], 5.0 / 3.0);
    close(v["mae"], 1.0);
    // Nothing seen: NaN, not a panic.
    assert!(values(&TaskMetrics::new(TaskLoss::NormalCosine))["median_angle"].is_nan());
}

#[test]
fn every_reported_metric_is_registered_with_a_direction() {
    let losses = [
        TaskLoss::CrossEntropy,
        TaskLoss::BinaryCrossEntropy,
        TaskLoss::Mse,
        TaskLoss::SegmentationCrossEntropy,
        TaskLoss::DepthL1,
        TaskLoss::NormalCosine,
    ];
    let mut reported: Vec<&str> = losses
        .iter()
        .flat_map(|&l| TaskMetrics::new(l).values().unwrap().into_iter().map(|(n, _)| n))
        .collect();
    reported.sort_unstable();
    reported.dedup();
    let mut registered: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
    registered.sort_unstable();
    assert_eq!(reported, registered);
    assert!(metric_info("miou").unwrap().higher_is_better);
    assert!(!metric_info("median_angle").unwrap().higher_is_better);
}
