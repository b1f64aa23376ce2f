//! A strategy's internal state between steps, for checkpoints: [`StrategyState`].
//!
//! [`crate::Strategy::state`] returns it and [`crate::Strategy::load_state`] restores it
//! into a strategy built with the same configuration, so that a resumed run continues
//! exactly where the interrupted one stopped. Host numbers and integers (loss histories,
//! counters, random generators) are serialisable ([`StrategyStateHost`], with serde);
//! tensors (per-task gradient buffers) are saved by the caller, e.g. as safetensors.
//! Learned parameters registered in [`crate::Setup::path`] are not part of it: they live
//! in that `VarStore` and are saved with the model.
//!
//! Strategies write their state with the `with_*` builders and read it back through a
//! [`StateReader`], whose errors ([`MtlError::State`]) name the strategy and the entry,
//! and which rejects entries it did not read.

use crate::error::{MtlError, Result};
use metl_data::rng::{self, Rng, RNG_WORDS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tch::Tensor;

/// A strategy's internal state between steps, for checkpoints.
#[derive(Debug, Default)]
pub struct StrategyState {
    /// Host numbers by name (serialisable).
    pub values: BTreeMap<String, Vec<f64>>,
    /// Host integers by name, e.g. counters and RNG words (serialisable).
    pub words: BTreeMap<String, Vec<u64>>,
    /// Tensors by name (saved by the caller as safetensors).
    pub tensors: BTreeMap<String, Tensor>,
}

/// The host part of a [`StrategyState`] (its `values` and `words`), serialisable with
/// serde.
///
/// Every number round-trips exactly through any serde format, NaN and infinities
/// included: each `f64` is written as the string of its shortest exact decimal form
/// (`"0.1"`, `"1e-8"`, `"NaN"`, `"-inf"`), which Rust parses back to the same value
/// (JSON numbers cannot hold NaN, and JSON parsers need not round exactly).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyStateHost {
    /// Host numbers by name.
    #[serde(with = "exact_floats")]
    pub values: BTreeMap<String, Vec<f64>>,
    /// Host integers by name.
    pub words: BTreeMap<String, Vec<u64>>,
}

impl StrategyState {
    /// A copy of the serialisable part, `values` and `words`.
    pub fn host(&self) -> StrategyStateHost {
        StrategyStateHost { values: self.values.clone(), words: self.words.clone() }
    }

    /// The state made of a host part (e.g. deserialised) and the tensors saved with it.
    pub fn from_parts(host: StrategyStateHost, tensors: BTreeMap<String, Tensor>) -> Self {
        Self { values: host.values, words: host.words, tensors }
    }

    /// Whether there is no entry at all (stateless strategies).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.words.is_empty() && self.tensors.is_empty()
    }

    /// Adds host numbers `name`.
    pub fn with_values(mut self, name: &str, values: impl Into<Vec<f64>>) -> Self {
        self.values.insert(name.to_owned(), values.into());
        self
    }

    /// Adds host integers `name`.
    pub fn with_words(mut self, name: &str, words: impl Into<Vec<u64>>) -> Self {
        self.words.insert(name.to_owned(), words.into());
        self
    }

    /// Adds one integer (a counter) `name`.
    pub fn with_word(self, name: &str, word: u64) -> Self {
        self.with_words(name, [word])
    }

    /// Adds a yes/no `name` (one word, 0 or 1).
    pub fn with_flag(self, name: &str, flag: bool) -> Self {
        self.with_word(name, u64::from(flag))
    }

    /// Adds a copy of `tensor` (detached, on its device, of its kind) as `name`.
    pub fn with_tensor(mut self, name: &str, tensor: &Tensor) -> Self {
        self.tensors.insert(name.to_owned(), tensor.detach().copy());
        self
    }

    /// Adds the whole state of a random generator as the words `name`.
    pub fn with_rng(self, name: &str, rng: &Rng) -> Self {
        self.with_words(name, rng::to_words(rng))
    }

    /// Adds numbers that may be absent: the flag `{name}.present`, and the values `name`
    /// when present.
    pub fn with_optional_values(self, name: &str, values: Option<&[f64]>) -> Self {
        let state = self.with_flag(&present(name), values.is_some());
        match values {
            Some(v) => state.with_values(name, v),
            None => state,
        }
    }

    /// Adds numbers each of which may be absent: the values `name` (0 where absent) and
    /// the words `{name}.present` (1 where present).
    pub fn with_masked_values(self, name: &str, values: &[Option<f64>]) -> Self {
        let mask: Vec<u64> = values.iter().map(|v| u64::from(v.is_some())).collect();
        let dense: Vec<f64> = values.iter().map(|v| v.unwrap_or(0.0)).collect();
        self.with_words(&present(name), mask).with_values(name, dense)
    }

    /// Adds a tensor that may be absent: the flag `{name}.present`, and a copy of the
    /// tensor `name` when present.
    pub fn with_optional_tensor(self, name: &str, tensor: Option<&Tensor>) -> Self {
        let state = self.with_flag(&present(name), tensor.is_some());
        match tensor {
            Some(t) => state.with_tensor(name, t),
            None => state,
        }
    }

    /// A reader of this state for `strategy` (named in its errors).
    pub fn reader(&self, strategy: &'static str) -> StateReader<'_> {
        StateReader { strategy, state: self, read: BTreeSet::new() }
    }

    /// The state of a strategy whose only state is its random generator.
    pub fn of_rng(rng: &Rng) -> Self {
        Self::default().with_rng("rng", rng)
    }

    /// The generator of an [`StrategyState::of_rng`] state of `strategy`; any other entry is
    /// an error.
    pub fn only_rng(&self, strategy: &'static str) -> Result<Rng> {
        let mut r = self.reader(strategy);
        let rng = r.rng("rng")?;
        r.finish()?;
        Ok(rng)
    }
}

/// The presence flag of optional entry `name`.
fn present(name: &str) -> String {
    format!("{name}.present")
}

/// Reads a [`StrategyState`] entry by entry for [`crate::Strategy::load_state`]. Every
/// error ([`MtlError::State`]) names the strategy and the entry (`values/history`,
/// `words/rng`, `tensors/y`); [`StateReader::finish`] rejects entries that were not read
/// (a state of another strategy or configuration).
#[derive(Debug)]
pub struct StateReader<'a> {
    strategy: &'static str,
    state: &'a StrategyState,
    read: BTreeSet<String>,
}

impl StateReader<'_> {
    /// An [`MtlError::State`] about `entry`.
    pub fn error(&self, entry: &str, reason: impl Into<String>) -> MtlError {
        MtlError::State { strategy: self.strategy, entry: entry.to_owned(), reason: reason.into() }
    }

    fn entry<'m, V>(&mut self, map: &'m BTreeMap<String, V>, part: &str, name: &str) -> Result<&'m V> {
        let entry = format!("{part}/{name}");
        let value = map.get(name).ok_or_else(|| self.error(&entry, "is missing"))?;
        self.read.insert(entry);
        Ok(value)
    }

    fn check_len(&self, entry: &str, found: usize, len: usize) -> Result<()> {
        if found == len {
            Ok(())
        } else {
            Err(self.error(entry, format!("has {found} entries, expected {len}")))
        }
    }

    /// The host numbers `name`, of any length.
    pub fn values_any(&mut self, name: &str) -> Result<Vec<f64>> {
        let state = self.state;
        Ok(self.entry(&state.values, "values", name)?.clone())
    }

    /// The host numbers `name`, which must have `len` entries.
    pub fn values(&mut self, name: &str, len: usize) -> Result<Vec<f64>> {
        let values = self.values_any(name)?;
        self.check_len(&format!("values/{name}"), values.len(), len)?;
        Ok(values)
    }

    /// The host integers `name`, of any length.
    pub fn words_any(&mut self, name: &str) -> Result<Vec<u64>> {
        let state = self.state;
        Ok(self.entry(&state.words, "words", name)?.clone())
    }

    /// The host integers `name`, which must have `len` entries.
    pub fn words(&mut self, name: &str, len: usize) -> Result<Vec<u64>> {
        let words = self.words_any(name)?;
        self.check_len(&format!("words/{name}"), words.len(), len)?;
        Ok(words)
    }

    /// The one integer `name`.
    pub fn word(&mut self, name: &str) -> Result<u64> {
        Ok(self.words(name, 1)?[0])
    }

    /// The yes/no `name` (0 or 1).
    pub fn flag(&mut self, name: &str) -> Result<bool> {
        match self.word(name)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.error(&format!("words/{name}"), format!("is {v}, expected 0 or 1"))),
        }
    }

    /// A copy of the tensor `name`, on the device and of the kind it has in the state.
    pub fn tensor(&mut self, name: &str) -> Result<Tensor> {
        let state = self.state;
        let tensor = self.entry(&state.tensors, "tensors", name)?.detach();
        let mut copy = tensor.f_empty_like()?;
        copy.f_copy_(&tensor)?;
        Ok(copy)
    }

    /// The random generator `name`.
    pub fn rng(&mut self, name: &str) -> Result<Rng> {
        let words: [u64; RNG_WORDS] = self.words(name, RNG_WORDS)?.try_into().expect("checked length");
        Ok(rng::from_words(&words))
    }

    /// Numbers written by [`StrategyState::with_optional_values`], `len` of them when
    /// present.
    pub fn optional_values(&mut self, name: &str, len: usize) -> Result<Option<Vec<f64>>> {
        if self.flag(&present(name))? {
            Ok(Some(self.values(name, len)?))
        } else {
            Ok(None)
        }
    }

    /// `len` numbers written by [`StrategyState::with_masked_values`].
    pub fn masked_values(&mut self, name: &str, len: usize) -> Result<Vec<Option<f64>>> {
        let mask = present(name);
        let present = self.words(&mask, len)?;
        if let Some(v) = present.iter().find(|v| **v > 1) {
            return Err(self.error(&format!("words/{mask}"), format!("holds {v}, expected 0 or 1")));
        }
        let values = self.values(name, len)?;
        Ok(present.iter().zip(values).map(|(p, v)| (*p == 1).then_some(v)).collect())
    }

    /// A tensor written by [`StrategyState::with_optional_tensor`].
    pub fn optional_tensor(&mut self, name: &str) -> Result<Option<Tensor>> {
        if self.flag(&present(name))? {
            Ok(Some(self.tensor(name)?))
        } else {
            Ok(None)
        }
    }

    /// Succeeds when every entry of the state was read; otherwise names one that was not.
    pub fn finish(self) -> Result<()> {
        let state = self.state;
        let all = state
            .values
            .keys()
            .map(|k| format!("values/{k}"))
            .chain(state.words.keys().map(|k| format!("words/{k}")))
            .chain(state.tensors.keys().map(|k| format!("tensors/{k}")));
        for entry in all {
            if !self.read.contains(&entry) {
                return Err(self.error(&entry, "is not part of this strategy's state"));
            }
        }
        Ok(())
    }
}

/// Serde of `BTreeMap<String, Vec<f64>>` with every number as its exact decimal string.
mod exact_floats {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(values: &BTreeMap<String, Vec<f64>>, s: S) -> Result<S::Ok, S::Error> {
        // `{:?}` is Rust's shortest representation that parses back to the same `f64`.
        s.collect_map(values.iter().map(|(k, v)| (k, v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<f64>>, D::Error> {
        let text = BTreeMap::<String, Vec<String>>::deserialize(d)?;
        text.into_iter()
            .map(|(k, v)| {
                let parsed = v
                    .iter()
                    .map(|x| {
                        x.parse::<f64>()
                            .map_err(|_| D::Error::custom(format!("values/{k}: `{x}` is not a number")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((k, parsed))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metl_data::rng::seeded;
    use rand::RngCore;
    use tch::{Device, Kind};

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn host_part_round_trips_exactly_through_json() {
        let awkward =
            [0.1 + 0.2, -0.0, f64::INFINITY, f64::NEG_INFINITY, 1e-308, 5e-324, f64::MAX, 1.0 / 3.0];
        let state = StrategyState::default()
            .with_values("awkward", awkward)
            .with_values("nan", [f64::NAN])
            .with_words("big", [u64::MAX, 0]);
        let json = serde_json::to_string(&state.host()).unwrap();
        let back: StrategyStateHost = serde_json::from_str(&json).unwrap();
        assert_eq!(bits(&back.values["awkward"]), bits(&awkward));
        assert!(back.values["nan"][0].is_nan());
        assert_eq!(back.words["big"], [u64::MAX, 0]);
        assert!(serde_json::from_str::<StrategyStateHost>(r#"{"values":{"a":["x"]},"words":{}}"#)
            .unwrap_err()
            .to_string()
            .contains("values/a: `x` is not a number"));
    }

    #[test]
    fn reader_gives_back_what_was_written() {
        let mut rng = seeded(4);
        rng.next_u32();
        let t = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]);
        let state = StrategyState::default()
            .with_values("v", [1.5, 2.5])
            .with_word("n", 7)
            .with_rng("rng", &rng)
            .with_optional_values("some", Some(&[3.0][..]))
            .with_optional_values("none", None)
            .with_masked_values("masked", &[Some(1.0), None])
            .with_optional_tensor("t", Some(&t));
        let mut r = state.reader("test");
        assert_eq!(r.values("v", 2).unwrap(), [1.5, 2.5]);
        assert_eq!(r.word("n").unwrap(), 7);
        assert_eq!(r.rng("rng").unwrap().next_u64(), rng.next_u64());
        assert_eq!(r.optional_values("some", 1).unwrap(), Some(vec![3.0]));
        assert_eq!(r.optional_values("none", 1).unwrap(), None);
        assert_eq!(r.masked_values("masked", 2).unwrap(), [Some(1.0), None]);
        let back = r.optional_tensor("t").unwrap().unwrap();
        assert!(back.equal(&t));
        r.finish().unwrap();
        // A copy: changing the original does not change the state.
        let _ = t.shallow_clone().fill_(9.0);
        assert!(!state.tensors["t"].equal(&t));
    }

    #[test]
    fn missing_mismatched_and_unexpected_entries_name_the_strategy_and_the_entry() {
        let state = StrategyState::default().with_values("v", [1.0]).with_word("flag", 2);
        let message = |e: MtlError| e.to_string();
        let mut r = state.reader("dwa");
        assert_eq!(
            message(r.values("absent", 1).unwrap_err()),
            "state of strategy `dwa`: entry `values/absent` is missing"
        );
        assert_eq!(
            message(r.values("v", 3).unwrap_err()),
            "state of strategy `dwa`: entry `values/v` has 1 entries, expected 3"
        );
        assert!(message(r.flag("flag").unwrap_err()).contains("`words/flag` is 2, expected 0 or 1"));
        let r = state.reader("dwa");
        assert_eq!(
            message(r.finish().unwrap_err()),
            "state of strategy `dwa`: entry `values/v` is not part of this strategy's state"
        );
    }
}
