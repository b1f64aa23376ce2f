//! The class splits of Omniglot used in the literature. Results are comparable only under
//! the same protocol; docs/data.md says which paper used which.

use super::{Omniglot, OmniglotSet};
use crate::{
    episode::{ClassPool, ClassSplits},
    error::{DataError, Result},
    image::ClassImages,
    rng::substream,
    Split,
};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// A class split protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OmniglotProtocol {
    /// Lake et al. (2015): train on the 964 background characters, test on the 659
    /// evaluation characters; no validation classes, no rotation.
    Lake,
    /// Finn et al. (2017, MAML): all 1,623 characters shuffled with the seed, 1,100 train /
    /// 100 validation / 423 test; every class rotated by a random multiple of 90° anew in
    /// each task, in all three splits.
    Maml,
    /// Vinyals et al. (2016), as distributed with Snell et al. (2017, Prototypical
    /// Networks): 1,028 train / 172 validation / 423 test characters, a fixed split by
    /// alphabet (see [`VINYALS_VAL_ALPHABETS`], [`VINYALS_TEST_ALPHABETS`]); each rotation
    /// by 0°, 90°, 180°, 270° is a class of its own (4,112 / 688 / 1,692 classes).
    Vinyals,
}

/// The background alphabets forming the Vinyals validation split (172 characters).
pub const VINYALS_VAL_ALPHABETS: [&str; 5] =
    ["Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"];

/// The evaluation alphabets forming the Vinyals test split (419 characters), together with
/// `Gurmukhi/character42`..`character45` (the other 41 Gurmukhi characters are train).
pub const VINYALS_TEST_ALPHABETS: [&str; 12] = [
    "Kannada",
    "Keble",
    "Malayalam",
    "Manipuri",
    "Mongolian",
    "Old_Church_Slavonic_(Cyrillic)",
    "Oriya",
    "Sylheti",
    "Syriac_(Serto)",
    "Tengwar",
    "Tibetan",
    "ULOG",
];

/// The train, validation and test class pools of a protocol (validation is empty for
/// [`OmniglotProtocol::Lake`]): the [`ClassSplits`] of every few-shot dataset.
pub type OmniglotSplits = ClassSplits;

/// MAML's class counts.
const MAML_TRAIN: usize = 1100;
const MAML_VAL: usize = 100;

impl Omniglot {
    /// The class pools of `protocol`; `seed` shuffles the classes of
    /// [`OmniglotProtocol::Maml`] (the other two are fixed).
    pub fn splits(&self, protocol: OmniglotProtocol, seed: u64) -> Result<OmniglotSplits> {
        let name = |split: Split| format!("omniglot/{}/{split}", protocol_name(protocol));
        match protocol {
            OmniglotProtocol::Lake => Ok(OmniglotSplits {
                train: ClassPool::unrotated(name(Split::Train), self.classes_of_set(OmniglotSet::Background)),
                val: ClassPool::unrotated(name(Split::Val), []),
                test: ClassPool::unrotated(name(Split::Test), self.classes_of_set(OmniglotSet::Evaluation)),
            }),
            OmniglotProtocol::Maml => {
                let n = self.num_classes();
                if n <= MAML_TRAIN + MAML_VAL {
                    return Err(DataError::invalid(
                        "omniglot.protocol",
                        "maml",
                        format!("needs more than {} characters, the data has {n}", MAML_TRAIN + MAML_VAL),
                    ));
                }
                let mut classes: Vec<usize> = (0..n).collect();
                classes.shuffle(&mut substream(seed, 0x4f4d_4e49));
                Ok(OmniglotSplits {
                    train: ClassPool::randomly_rotated(
                        name(Split::Train),
                        classes[..MAML_TRAIN].iter().copied(),
                    ),
                    val: ClassPool::randomly_rotated(
                        name(Split::Val),
                        classes[MAML_TRAIN..MAML_TRAIN + MAML_VAL].iter().copied(),
                    ),
                    test: ClassPool::randomly_rotated(
                        name(Split::Test),
                        classes[MAML_TRAIN + MAML_VAL..].iter().copied(),
                    ),
                })
            }
            OmniglotProtocol::Vinyals => {
                for alphabet in
                    VINYALS_VAL_ALPHABETS.iter().chain(&VINYALS_TEST_ALPHABETS).chain(&["Gurmukhi"])
                {
                    if !self.alphabets().iter().any(|a| a == alphabet) {
                        return Err(DataError::invalid(
                            "omniglot.protocol",
                            "vinyals",
                            format!("needs alphabet {alphabet}, which the data lacks"),
                        ));
                    }
                }
                let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
                for class in 0..self.num_classes() {
                    let alphabet = self.alphabet_name(class);
                    let character = self.character_name(class);
                    if VINYALS_VAL_ALPHABETS.contains(&alphabet) {
                        val.push(class);
                    } else if VINYALS_TEST_ALPHABETS.contains(&alphabet)
                        || (alphabet == "Gurmukhi"
                            && ["character42", "character43", "character44", "character45"]
                                .contains(&character))
                    {
                        test.push(class);
                    } else {
                        train.push(class);
                    }
                }
                Ok(OmniglotSplits {
                    train: ClassPool::rotations_as_classes(name(Split::Train), train),
                    val: ClassPool::rotations_as_classes(name(Split::Val), val),
                    test: ClassPool::rotations_as_classes(name(Split::Test), test),
                })
            }
        }
    }
}

fn protocol_name(protocol: OmniglotProtocol) -> &'static str {
    match protocol {
        OmniglotProtocol::Lake => "lake",
        OmniglotProtocol::Maml => "maml",
        OmniglotProtocol::Vinyals => "vinyals",
    }
}
