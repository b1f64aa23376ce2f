//! Tests on the real Omniglot: counts, pixels (against Pillow), the split protocols,
//! episodes, determinism and Omniglot-50. Skipped, with the reason printed, when the data
//! is absent.

mod common;

use common::omniglot;
use metl_data::{
    episode::{ClassPool, EpisodeConfig, EpisodeSampler, Rotation},
    image::{rotate_square, ClassImages},
    multitask::{MultiTaskDataset, Omniglot50, Omniglot50Config},
    omniglot::{OmniglotSet, VINYALS_TEST_ALPHABETS, VINYALS_VAL_ALPHABETS},
    DataError, Omniglot, OmniglotConfig, OmniglotProtocol, Split,
};
use std::{collections::HashSet, sync::Arc};
use tch::{Device, Kind, Tensor};

#[test]
fn counts_names_and_sets() {
    let Some(o) = omniglot() else { return };
    assert_eq!(o.num_classes(), 1623);
    assert_eq!(o.store().num_images(), 32_460);
    assert_eq!(o.image_shape(), [1, 28, 28]);
    assert_eq!(o.classes_of_set(OmniglotSet::Background), 0..964);
    assert_eq!(o.classes_of_set(OmniglotSet::Evaluation), 964..1623);
    assert_eq!(o.alphabets().len(), 50);
    let background = (0..50).filter(|&a| o.alphabet_set(a) == OmniglotSet::Background).count();
    assert_eq!(background, 30);
    assert!((0..1623).all(|c| o.class_len(c) == 20));
    assert_eq!(o.class_name(0), "Alphabet_of_the_Magi/character01");
    assert_eq!(o.alphabet_name(0), "Alphabet_of_the_Magi");
    assert_eq!(o.character_name(0), "character01");
    let latin = o.alphabets().iter().position(|a| a == "Latin").unwrap();
    assert_eq!(o.classes_of_alphabet(latin).len(), 26);
    assert_eq!(o.set_of(1622), OmniglotSet::Evaluation);
    // Under 30 MB in memory at 28×28.
    assert_eq!(o.store().pixels().len(), 32_460 * 784);
}

#[test]
fn strokes_are_one_and_background_zero() {
    let Some(o) = omniglot() else { return };
    let pixels = o.store().pixels();
    let mean = pixels.iter().map(|&v| v as f64).sum::<f64>() / pixels.len() as f64 / 255.0;
    // Strokes cover a small part of each drawing.
    assert!((0.03..0.3).contains(&mean), "mean intensity {mean}");
    for class in [0, 500, 1622] {
        let image = o.image(class, 0);
        assert_eq!(image[0], 0, "corner is background");
        assert!(image.iter().any(|&v| v > 200), "the drawing has strokes");
    }
}

/// Our 28×28 bytes equal `255 − Pillow's LANCZOS resize of the image converted to "L"`.
#[test]
fn images_match_pillow_lanczos() {
    let Some(o) = omniglot() else { return };
    let Some(python) = std::env::var_os("METL_PYTHON") else {
        eprintln!("SKIPPED: METL_PYTHON is not set (cargo xtask env sets it)");
        return;
    };
    let dir = common::omniglot_dir().unwrap();
    let script = r#"
import sys, zipfile, io
import numpy as np
from PIL import Image
root = sys.argv[1]
for zname, alphabet, character, k in [("images_background", "Latin", "character05", 3),
                                      ("images_evaluation", "Tengwar", "character11", 17)]:
    z = zipfile.ZipFile(f"{root}/{zname}.zip")
    folder = f"{zname}/{alphabet}/{character}/"
    names = sorted(n for n in z.namelist() if n.startswith(folder) and n.endswith(".png"))
    im = Image.open(io.BytesIO(z.read(names[k]))).convert("L").resize((28, 28), Image.LANCZOS)
    print(f"{alphabet}/{character}", k, " ".join(str(255 - int(v)) for v in np.asarray(im).ravel()))
"#;
    let out = std::process::Command::new(python).arg("-c").arg(script).arg(&dir).output().unwrap();
    if !out.status.success() {
        eprintln!("SKIPPED: the Pillow reference failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut checked = 0;
    for line in stdout.lines() {
        let mut parts = line.splitn(3, ' ');
        let (name, k, values) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let class = (0..o.num_classes()).find(|&c| o.class_name(c) == name).unwrap();
        let want: Vec<u8> = values.split(' ').map(|v| v.parse().unwrap()).collect();
        assert_eq!(o.image(class, k.parse().unwrap()), want.as_slice(), "{name} drawing {k}");
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn a_second_load_comes_from_the_cache_and_is_identical() {
    let Some(o) = omniglot() else { return };
    let again = Omniglot::load(OmniglotConfig::new(common::omniglot_dir().unwrap())).unwrap();
    if o.load_report().cache_error.is_some() {
        eprintln!("SKIPPED: the cache folder is not writable: {:?}", o.load_report().cache_error);
        return;
    }
    assert!(again.load_report().from_cache);
    assert_eq!(again.store(), o.store());
    assert_eq!(again.alphabets(), o.alphabets());
    assert_eq!(again.classes_of_set(OmniglotSet::Evaluation), 964..1623);
}

fn pool_classes(pool: &ClassPool) -> Vec<usize> {
    pool.classes().iter().map(|c| c.class).collect()
}

#[test]
fn lake_split_is_background_then_evaluation() {
    let Some(o) = omniglot() else { return };
    let s = o.splits(OmniglotProtocol::Lake, 0).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (964, 0, 659));
    assert!(s.train.classes().iter().all(|c| c.rotation == Rotation::Fixed(0) && c.class < 964));
    assert!(s.test.classes().iter().all(|c| c.class >= 964));
    assert_eq!(s.test.name(), "omniglot/lake/test");
}

#[test]
fn maml_split_is_seeded_disjoint_and_randomly_rotated() {
    let Some(o) = omniglot() else { return };
    let s = o.splits(OmniglotProtocol::Maml, 1).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (1100, 100, 423));
    let mut all: Vec<usize> = [&s.train, &s.val, &s.test].iter().flat_map(|p| pool_classes(p)).collect();
    all.sort_unstable();
    assert_eq!(all, (0..1623).collect::<Vec<_>>(), "a partition of all characters");
    assert!([&s.train, &s.val, &s.test]
        .iter()
        .all(|p| p.classes().iter().all(|c| c.rotation == Rotation::Random)));
    // Shuffled: both background and evaluation characters in the test split.
    assert!(
        s.test.classes().iter().any(|c| c.class < 964) && s.test.classes().iter().any(|c| c.class >= 964)
    );
    assert_eq!(o.splits(OmniglotProtocol::Maml, 1).unwrap(), s);
    assert_ne!(pool_classes(&o.splits(OmniglotProtocol::Maml, 2).unwrap().test), pool_classes(&s.test));
}

#[test]
fn vinyals_split_has_every_rotation_as_a_class() {
    let Some(o) = omniglot() else { return };
    let s = o.splits(OmniglotProtocol::Vinyals, 0).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (4 * 1028, 4 * 172, 4 * 423));
    for pool in [&s.train, &s.val, &s.test] {
        for chunk in pool.classes().chunks(4) {
            let rotations: Vec<Rotation> = chunk.iter().map(|c| c.rotation).collect();
            assert_eq!(rotations, (0..4).map(Rotation::Fixed).collect::<Vec<_>>());
            assert!(chunk.iter().all(|c| c.class == chunk[0].class));
        }
    }
    let alphabets = |pool: &ClassPool| -> HashSet<String> {
        pool.classes().iter().map(|c| o.alphabet_name(c.class).to_owned()).collect()
    };
    assert_eq!(alphabets(&s.val), VINYALS_VAL_ALPHABETS.iter().map(|a| a.to_string()).collect());
    let mut test_alphabets: HashSet<String> = VINYALS_TEST_ALPHABETS.iter().map(|a| a.to_string()).collect();
    test_alphabets.insert("Gurmukhi".into());
    assert_eq!(alphabets(&s.test), test_alphabets);
    let gurmukhi_test = s.test.classes().iter().filter(|c| o.alphabet_name(c.class) == "Gurmukhi").count();
    assert_eq!(gurmukhi_test, 4 * 4);
    // All of the background set except the validation alphabets is train.
    assert_eq!(s.train.classes().iter().filter(|c| c.class < 964).count(), 4 * (964 - 172));
}

/// Checks the episodes against the batch: N distinct classes, N·(K+Q) distinct images,
/// labels `0..N` grouped by class, and pixels equal to the (rotated) source images.
fn check_batch(
    o: &Omniglot,
    config: &EpisodeConfig,
    batch: &metl_data::TaskBatch,
    episodes: &[metl_data::episode::Episode],
) {
    let (n, k, q, b) = (config.ways, config.shots, config.queries, config.meta_batch);
    assert_eq!(batch.support_x.size(), [b as i64, (n * k) as i64, 1, 28, 28]);
    assert_eq!(batch.query_x.size(), [b as i64, (n * q) as i64, 1, 28, 28]);
    assert_eq!(batch.support_y.size(), [b as i64, (n * k) as i64]);
    assert_eq!(batch.support_x.kind(), Kind::Float);
    assert_eq!(batch.query_y.kind(), Kind::Int64);
    let sy = Vec::<i64>::try_from(batch.support_y.flatten(0, -1)).unwrap();
    let qy = Vec::<i64>::try_from(batch.query_y.flatten(0, -1)).unwrap();
    for (e, episode) in episodes.iter().enumerate() {
        let classes: HashSet<(usize, u8)> = episode.classes.iter().map(|c| (c.class, c.rotation)).collect();
        assert_eq!(classes.len(), n, "N distinct classes");
        let mut images = HashSet::new();
        for (rows, per, x, y) in
            [(&episode.support, k, &batch.support_x, &sy), (&episode.query, q, &batch.query_x, &qy)]
        {
            for (r, &index) in rows.iter().enumerate() {
                let label = r / per;
                assert_eq!(y[e * n * per + r], label as i64);
                let class = episode.classes[label];
                assert!(images.insert((class.class, class.rotation, index)), "images are distinct");
                let mut want = vec![0u8; 784];
                rotate_square(o.image(class.class, index), 1, 28, class.rotation, &mut want);
                let got = x.get(e as i64).get(r as i64).flatten(0, -1);
                let want = Tensor::from_slice(&want).to_kind(Kind::Float) / 255.0;
                assert!(got.allclose(&want, 1e-6, 1e-6, false), "episode {e} row {r}");
            }
        }
        assert_eq!(images.len(), n * (k + q));
    }
}

#[test]
fn episodes_hold_distinct_images_of_distinct_classes() {
    let Some(o) = omniglot() else { return };
    for (protocol, config) in [
        (
            OmniglotProtocol::Vinyals,
            EpisodeConfig { ways: 5, shots: 1, queries: 15, meta_batch: 4, within_group: false },
        ),
        (
            OmniglotProtocol::Maml,
            EpisodeConfig { ways: 20, shots: 1, queries: 5, meta_batch: 3, within_group: false },
        ),
        (
            OmniglotProtocol::Lake,
            EpisodeConfig { ways: 20, shots: 5, queries: 15, meta_batch: 2, within_group: true },
        ),
    ] {
        let pool = o.splits(protocol, 0).unwrap().test;
        let mut sampler = EpisodeSampler::new(o.clone(), pool, config, 11).unwrap();
        let (batch, episodes) = sampler.sample_batch_with_episodes(Device::Cpu).unwrap();
        check_batch(&o, &config, &batch, &episodes);
    }
}

#[test]
fn labels_are_remapped_in_random_order() {
    let Some(o) = omniglot() else { return };
    let pool = o.splits(OmniglotProtocol::Lake, 0).unwrap().train;
    let sampler = EpisodeSampler::new(o.clone(), pool, EpisodeConfig::new(5, 1, 1), 3).unwrap();
    let (mut ascending, mut label0) = (0, HashSet::new());
    for i in 0..400 {
        let classes: Vec<usize> = sampler.episode(i).classes.iter().map(|c| c.class).collect();
        ascending += classes.windows(2).all(|w| w[0] < w[1]) as usize;
        label0.insert(classes[0]);
    }
    // A random order is ascending with probability 1/5! = 1/120: ~3 of 400.
    assert!(ascending < 20, "{ascending} of 400 episodes list their classes in ascending order");
    assert!(label0.len() > 300, "label 0 goes to many different classes");
}

#[test]
fn maml_rotations_are_random_per_class_and_episode() {
    let Some(o) = omniglot() else { return };
    let pool = o.splits(OmniglotProtocol::Maml, 0).unwrap().train;
    let sampler = EpisodeSampler::new(o.clone(), pool, EpisodeConfig::new(5, 1, 1), 0).unwrap();
    let mut counts = [0usize; 4];
    for i in 0..400 {
        for class in sampler.episode(i).classes {
            counts[class.rotation as usize] += 1;
        }
    }
    // 2000 draws, 500 ± 4σ (σ ≈ 19) each.
    assert!(counts.iter().all(|&c| (420..580).contains(&c)), "{counts:?}");
    let vinyals = o.splits(OmniglotProtocol::Vinyals, 0).unwrap().train;
    let sampler = EpisodeSampler::new(o.clone(), vinyals.clone(), EpisodeConfig::new(5, 1, 1), 0).unwrap();
    let lookup: HashSet<(usize, u8)> = vinyals
        .classes()
        .iter()
        .map(|c| {
            (
                c.class,
                match c.rotation {
                    Rotation::Fixed(k) => k,
                    Rotation::Random => 9,
                },
            )
        })
        .collect();
    assert!(sampler.episode(5).classes.iter().all(|c| lookup.contains(&(c.class, c.rotation))));
}

#[test]
fn sampling_is_deterministic_whatever_the_thread_count() {
    let Some(o) = omniglot() else { return };
    let pool = o.splits(OmniglotProtocol::Maml, 0).unwrap().train;
    let config = EpisodeConfig { ways: 5, shots: 1, queries: 15, meta_batch: 16, within_group: false };
    let run = |threads: usize, seed: u64| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut sampler = EpisodeSampler::new(o.clone(), pool_of(&o), config, seed).unwrap();
        pool.install(|| (sampler.sample_buffers(), sampler.sample_buffers()))
    };
    fn pool_of(o: &Omniglot) -> ClassPool {
        o.splits(OmniglotProtocol::Maml, 0).unwrap().train
    }
    let (a1, a2) = run(1, 5);
    let (b1, b2) = run(3, 5);
    assert_eq!((&a1.episodes, &a1.support_x, &a1.query_x), (&b1.episodes, &b1.support_x, &b1.query_x));
    assert_eq!((&a2.episodes, &a2.query_x), (&b2.episodes, &b2.query_x));
    assert_ne!(a1.episodes, a2.episodes, "consecutive batches differ");
    let (c1, _) = run(2, 6);
    assert_ne!(a1.episodes, c1.episodes, "another seed, other episodes");
    // Seeking replays.
    let mut sampler = EpisodeSampler::new(o.clone(), pool, config, 5).unwrap();
    sampler.seek(16);
    assert_eq!(sampler.sample_buffers().episodes, a2.episodes);
}

#[test]
fn prefetching_gives_the_same_batches() {
    let Some(o) = omniglot() else { return };
    let pool = o.splits(OmniglotProtocol::Vinyals, 0).unwrap().val;
    let config = EpisodeConfig { ways: 20, shots: 1, queries: 1, meta_batch: 8, within_group: false };
    let mut direct = EpisodeSampler::new(o.clone(), pool.clone(), config, 9).unwrap();
    let mut prefetched = EpisodeSampler::new(o.clone(), pool, config, 9).unwrap().prefetch(2, Device::Cpu);
    for _ in 0..3 {
        let (a, b) = (direct.sample_batch(Device::Cpu).unwrap(), prefetched.next().unwrap().unwrap());
        assert!(
            a.support_x.equal(&b.support_x) && a.query_x.equal(&b.query_x) && a.query_y.equal(&b.query_y)
        );
    }
    drop(prefetched); // stops the worker
}

#[test]
fn within_alphabet_episodes_share_one_alphabet() {
    let Some(o) = omniglot() else { return };
    let pool = o.splits(OmniglotProtocol::Lake, 0).unwrap().test;
    let config = EpisodeConfig { ways: 20, shots: 1, queries: 1, meta_batch: 1, within_group: true };
    let sampler = EpisodeSampler::new(o.clone(), pool, config, 0).unwrap();
    let mut alphabets = HashSet::new();
    for i in 0..400 {
        let episode = sampler.episode(i);
        let a = o.alphabet_of(episode.classes[0].class);
        assert!(episode.classes.iter().all(|c| o.alphabet_of(c.class) == a));
        alphabets.insert(a);
    }
    // Evaluation alphabets with at least 20 characters: all 20 of them.
    assert_eq!(alphabets.len(), 20);
}

#[test]
fn impossible_episodes_are_errors() {
    let Some(o) = omniglot() else { return };
    let splits = o.splits(OmniglotProtocol::Lake, 0).unwrap();
    let err =
        EpisodeSampler::new(o.clone(), splits.test.clone(), EpisodeConfig::new(660, 1, 1), 0).unwrap_err();
    assert!(matches!(err, DataError::NotEnoughClasses { ways: 660, available: 659, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "omniglot/lake/test: 660-way episodes need 660 classes, but only 659 are available"
    );
    let err = EpisodeSampler::new(o.clone(), splits.val, EpisodeConfig::new(5, 1, 1), 0).unwrap_err();
    assert!(matches!(err, DataError::NotEnoughClasses { available: 0, .. }), "{err}");
    let err =
        EpisodeSampler::new(o.clone(), splits.train.clone(), EpisodeConfig::new(5, 5, 16), 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "class Alphabet_of_the_Magi/character01: needs 21 examples (shots + queries) but has 20"
    );
    let within = EpisodeConfig { ways: 56, within_group: true, ..EpisodeConfig::new(56, 1, 1) };
    let err = EpisodeSampler::new(o.clone(), splits.train, within, 0).unwrap_err();
    assert!(matches!(err, DataError::NotEnoughClasses { available: 55, .. }), "{err}");
}

#[test]
fn omniglot50_splits_drawings_10_4_6_per_character() {
    let Some(o) = omniglot() else { return };
    let data = Omniglot50::new(o.clone(), Omniglot50Config::default()).unwrap();
    assert_eq!(data.num_tasks(), 50);
    let classes: usize = data.tasks().iter().map(|t| t.kind.output_dim()).sum();
    assert_eq!(classes, 1623);
    assert_eq!([Split::Train, Split::Val, Split::Test].map(|s| data.len(s)), [16_230, 6_492, 9_738]);
    let mut seen = HashSet::new();
    for split in Split::ALL {
        for i in 0..data.len(split) {
            assert!(seen.insert(data.sample(split, i)), "drawings are in exactly one split");
        }
    }
    assert_eq!(seen.len(), 32_460);
    let again = Omniglot50::new(o.clone(), Omniglot50Config::default()).unwrap();
    assert_eq!(again.sample(Split::Test, 77), data.sample(Split::Test, 77));
    let other = Omniglot50::new(o.clone(), Omniglot50Config { seed: 1, ..Default::default() }).unwrap();
    assert!((0..100).any(|i| other.sample(Split::Train, i) != data.sample(Split::Train, i)));

    let indices = [0, 5000, 16_229];
    let batch = data.batch(Split::Train, &indices, Device::Cpu).unwrap();
    assert_eq!(batch.inputs.size(), [3, 1, 28, 28]);
    let ids = Vec::<i64>::try_from(batch.task_ids.as_ref().unwrap()).unwrap();
    for (row, &i) in indices.iter().enumerate() {
        let (class, drawing) = data.sample(Split::Train, i);
        let task = o.alphabet_of(class);
        assert_eq!(ids[row], task as i64);
        let (_, target) = batch.labelled(task, &batch.inputs).unwrap();
        let label = (class - o.classes_of_alphabet(task).start) as i64;
        assert!(Vec::<i64>::try_from(&target).unwrap().contains(&label));
        let want = Tensor::from_slice(o.image(class, drawing)).to_kind(Kind::Float) / 255.0;
        assert!(batch.inputs.get(row as i64).flatten(0, -1).allclose(&want, 1e-6, 1e-6, false));
    }
    let bad = Omniglot50Config { drawings: [10, 4, 7], ..Default::default() };
    assert!(matches!(Omniglot50::new(o, bad), Err(DataError::NotEnoughExamples { needed: 21, .. })));
}

#[test]
fn omniglot50_on_a_subset_of_alphabets_keeps_their_samples() {
    let Some(o) = omniglot() else { return };
    let full = Omniglot50::new(o.clone(), Omniglot50Config::default()).unwrap();
    let config = Omniglot50Config { alphabets: Some(vec![7, 2]), ..Default::default() };
    let two = Omniglot50::new(o.clone(), config).unwrap();
    assert_eq!(two.num_tasks(), 2);
    assert_eq!(two.tasks()[0].name, o.alphabets()[7]);
    for split in Split::ALL {
        let want: HashSet<(usize, usize)> = (0..full.len(split))
            .map(|i| full.sample(split, i))
            .filter(|(class, _)| [7, 2].contains(&o.alphabet_of(*class)))
            .collect();
        let got: HashSet<(usize, usize)> = (0..two.len(split)).map(|i| two.sample(split, i)).collect();
        assert_eq!(got, want, "{split}");
    }
    let indices: Vec<usize> = (0..two.len(Split::Test)).collect();
    let batch = two.batch(Split::Test, &indices, Device::Cpu).unwrap();
    let ids = Vec::<i64>::try_from(batch.task_ids.as_ref().unwrap()).unwrap();
    for (row, &i) in indices.iter().enumerate() {
        let alphabet = o.alphabet_of(two.sample(Split::Test, i).0);
        assert_eq!(ids[row], if alphabet == 7 { 0 } else { 1 });
    }
    for bad in [vec![], vec![3, 3], vec![50]] {
        let config = Omniglot50Config { alphabets: Some(bad.clone()), ..Default::default() };
        let err = Omniglot50::new(o.clone(), config).unwrap_err();
        assert!(err.to_string().contains("omniglot50.alphabets"), "{bad:?}: {err}");
    }
}

#[test]
fn a_user_pool_works_on_any_class_subset() {
    let Some(o) = omniglot() else { return };
    let pool = ClassPool::unrotated("five", [3, 9, 27, 81, 243]);
    let mut sampler =
        EpisodeSampler::new(o.clone() as Arc<dyn ClassImages>, pool, EpisodeConfig::new(5, 2, 3), 0).unwrap();
    let (batch, episodes) = sampler.sample_batch_with_episodes(Device::Cpu).unwrap();
    assert_eq!(batch.num_tasks(), 32);
    let mut classes: Vec<usize> = episodes[0].classes.iter().map(|c| c.class).collect();
    classes.sort_unstable();
    assert_eq!(classes, [3, 9, 27, 81, 243]);
}

/// On a CUDA machine: batches on the GPU equal the CPU's (skipped without CUDA).
#[test]
fn batches_on_cuda_equal_those_on_the_cpu() {
    let Some(o) = omniglot() else { return };
    if !tch::Cuda::is_available() {
        eprintln!("SKIPPED: no CUDA device");
        return;
    }
    let cuda = Device::Cuda(0);
    let pool = o.splits(OmniglotProtocol::Maml, 0).unwrap().train;
    let config = EpisodeConfig { ways: 5, shots: 1, queries: 15, meta_batch: 8, within_group: false };
    let mut cpu = EpisodeSampler::new(o.clone(), pool.clone(), config, 1).unwrap();
    let mut gpu = EpisodeSampler::new(o.clone(), pool.clone(), config, 1).unwrap();
    let (a, b) = (cpu.sample_batch(Device::Cpu).unwrap(), gpu.sample_batch(cuda).unwrap());
    assert_eq!(b.device(), cuda);
    assert!(a.support_x.equal(&b.support_x.to_device(Device::Cpu)));
    assert!(a.query_y.equal(&b.query_y.to_device(Device::Cpu)));
    let mut prefetched = EpisodeSampler::new(o.clone(), pool, config, 1).unwrap().prefetch(2, cuda);
    let c = prefetched.next_batch().unwrap();
    assert_eq!(c.query_x.device(), cuda);
    assert!(a.query_x.equal(&c.query_x.to_device(Device::Cpu)));
    let data = Omniglot50::new(o, Omniglot50Config::default()).unwrap();
    let batch = data.batch(Split::Val, &[1, 2, 3], cuda).unwrap();
    assert_eq!((batch.inputs.device(), batch.mask.device()), (cuda, cuda));
    assert_eq!(batch.labelled(0, &batch.inputs).unwrap().0.device(), cuda);
}
