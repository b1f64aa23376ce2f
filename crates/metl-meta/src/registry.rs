//! The algorithms of this crate by name, for command lines and listings (`metl list`).

/// One meta-learning algorithm: the name configs use, what it is, and its paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmInfo {
    /// The name in configs (`[meta.<name>]`, snake case), e.g. `meta_sgd`.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Authors, year, title.
    pub paper: &'static str,
    /// The module implementing it.
    pub module: &'static str,
}

/// Every algorithm of metl-meta.
pub const ALGORITHMS: &[AlgorithmInfo] = &[
    AlgorithmInfo {
        name: "maml",
        summary: "second-order MAML: differentiate through k SGD steps on the support set",
        paper: "Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
        module: "maml",
    },
    AlgorithmInfo {
        name: "fomaml",
        summary: "first-order MAML: the query gradient at the adapted weights",
        paper: "Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
        module: "maml",
    },
    AlgorithmInfo {
        name: "meta_sgd",
        summary: "MAML with a learned inner learning rate per weight",
        paper: "Li, Zhou, Chen & Li 2017, Meta-SGD: Learning to Learn Quickly for Few-Shot Learning",
        module: "meta_sgd",
    },
    AlgorithmInfo {
        name: "anil",
        summary: "MAML with the inner loop on the head only",
        paper: "Raghu, Raghu, Bengio & Vinyals 2020, Rapid Learning or Feature Reuse?",
        module: "anil",
    },
    AlgorithmInfo {
        name: "maml_plus_plus",
        summary: "MAML with multi-step loss, per-layer per-step rates, per-step batch norm, \
                  derivative-order and cosine annealing",
        paper: "Antoniou, Edwards & Storkey 2019, How to train your MAML",
        module: "maml_plus_plus",
    },
    AlgorithmInfo {
        name: "reptile",
        summary: "move the initialisation towards the weights adapted to each task",
        paper: "Nichol, Achiam & Schulman 2018, On First-Order Meta-Learning Algorithms",
        module: "reptile",
    },
    AlgorithmInfo {
        name: "protonet",
        summary: "classify by distance to class-mean embeddings (Euclidean or cosine)",
        paper: "Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot Learning",
        module: "protonet",
    },
    AlgorithmInfo {
        name: "matching",
        summary: "attention over the support embeddings by cosine similarity",
        paper: "Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra 2016, Matching Networks for One Shot Learning",
        module: "matching",
    },
    AlgorithmInfo {
        name: "baseline",
        summary: "pre-train a classifier on all training classes, fit a new linear head per episode",
        paper: "Chen, Liu, Kira, Wang & Huang 2019, A Closer Look at Few-shot Classification",
        module: "baseline",
    },
    AlgorithmInfo {
        name: "baseline_plus_plus",
        summary: "Baseline with a cosine-similarity head",
        paper: "Chen, Liu, Kira, Wang & Huang 2019, A Closer Look at Few-shot Classification",
        module: "baseline",
    },
];

/// The algorithm called `name`, if any.
pub fn algorithm(name: &str) -> Option<&'static AlgorithmInfo> {
    ALGORITHMS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, a) in ALGORITHMS.iter().enumerate() {
            assert!(ALGORITHMS[i + 1..].iter().all(|b| b.name != a.name), "{}", a.name);
            assert_eq!(algorithm(a.name), Some(a));
        }
        assert!(algorithm("nope").is_none());
    }
}
