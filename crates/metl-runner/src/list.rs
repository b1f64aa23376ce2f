//! `metl list`: what a configuration file can name, printed from the registries that the
//! configuration enums themselves are checked against (tests below), so the list never
//! drifts from the code.

use crate::{
    experiment::{data::DATASETS, mtl::ARCHITECTURES},
    zoo::BACKBONES,
};
use metl_meta::registry::ALGORITHMS;
use metl_mtl::STRATEGIES;

fn section(title: &str, key: &str, rows: &[(String, String)]) {
    println!("{title} ({key}):");
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, description) in rows {
        println!("  {name:<width$}  {description}");
    }
    println!();
}

/// Prints every dataset, model, multi-task architecture, weighting strategy and
/// meta-learning algorithm.
pub fn run() -> anyhow::Result<()> {
    let rows = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect()
    };
    let datasets: Vec<(String, String)> =
        DATASETS.iter().map(|(n, kind, d)| (n.to_string(), format!("[{kind}] {d}"))).collect();
    section("datasets", "[data.<name>]", &datasets);
    section("models", "[model.<name>]", &rows(BACKBONES));
    let algorithms: Vec<(String, String)> =
        ALGORITHMS.iter().map(|a| (a.name.to_owned(), format!("{} ({})", a.summary, a.paper))).collect();
    section("meta-learning algorithms", "[meta.<name>]", &algorithms);
    section("multi-task architectures", "[mtl] architecture = \"<name>\"", &rows(ARCHITECTURES));
    let strategies = STRATEGIES
        .iter()
        .map(|s| Ok((s.name.to_string(), format!("{} (needs {})", s.description, s.needs_description()?))))
        .collect::<Result<Vec<(String, String)>, metl_mtl::MtlError>>()?;
    section("multi-task weighting strategies", "[mtl] strategy = { name = \"<name>\" }", &strategies);
    let meta_batch = STRATEGIES
        .iter()
        .map(|s| {
            let config = metl_mtl::StrategyConfig::default_for(s.name)?;
            let verdict = match crate::experiment::task_weighting::refusal_reason(&config) {
                None => "yes".to_owned(),
                Some(reason) => format!("no: it {reason}"),
            };
            Ok((s.name.to_string(), verdict))
        })
        .collect::<Result<Vec<(String, String)>, metl_mtl::MtlError>>()?;
    section(
        "weighting the tasks of a MAML-family meta-batch",
        "[task_weighting] name = \"<name>\"",
        &meta_batch,
    );
    section(
        "task losses (chosen by each task's kind)",
        "data: regression, classification, binary, segmentation, depth, normals",
        &rows(metl_models::loss::TASK_LOSSES),
    );
    let metrics: Vec<(String, String)> = metl_models::metrics::METRICS
        .iter()
        .map(|m| {
            let direction = if m.higher_is_better { "higher is better" } else { "lower is better" };
            (m.name.to_owned(), format!("{} — {direction} in Δm", m.description))
        })
        .collect();
    section("task metrics (in eval.json, per task)", "tasks[].metrics", &metrics);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{
        experiment::{data::DataConfig, meta::AlgorithmConfig, mtl::ArchitectureConfig},
        zoo::BackboneConfig,
    };
    use serde::de::DeserializeOwned;
    use std::collections::BTreeSet;

    /// The variants serde accepts, read from its "unknown variant" message.
    fn variants<T: DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
        let err = toml::from_str::<T>("[no_such_variant]\n").unwrap_err().to_string();
        let list = err.split("expected one of ").nth(1).or_else(|| err.split("expected ").nth(1)).unwrap();
        list.split(',')
            .map(|v| {
                v.trim()
                    .trim_matches(|c: char| c == '`' || c.is_whitespace())
                    .trim_start_matches("or `")
                    .to_owned()
            })
            .map(|v| v.lines().next().unwrap_or_default().trim_end_matches('`').to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn names(items: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
        items.into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn registries_list_exactly_the_configurable_variants() {
        assert_eq!(variants::<DataConfig>(), names(super::DATASETS.iter().map(|d| d.0)));
        assert_eq!(variants::<BackboneConfig>(), names(super::BACKBONES.iter().map(|d| d.0)));
        assert_eq!(variants::<AlgorithmConfig>(), names(super::ALGORITHMS.iter().map(|a| a.name)));
        assert_eq!(variants::<ArchitectureConfig>(), names(super::ARCHITECTURES.iter().map(|a| a.0)));
    }
}
