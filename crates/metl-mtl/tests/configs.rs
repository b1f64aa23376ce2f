//! Strategies are selected by name from configuration files, with the papers' defaults for
//! what is not given and clear errors for what is wrong.

use metl_mtl::{registry::STRATEGIES, MtlError, Setup, StrategyConfig};
use serde::Deserialize;
use tch::{nn, Device};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    strategy: StrategyConfig,
}

fn parse(text: &str) -> Result<StrategyConfig, toml::de::Error> {
    toml::from_str::<File>(text).map(|f| f.strategy)
}

#[test]
fn every_registered_name_parses_with_its_defaults_and_builds() {
    for info in STRATEGIES {
        let parsed = parse(&format!("[strategy]\nname = \"{}\"\n", info.name)).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let setup = Setup { num_tasks: 3, path: vs.root(), seed: 0 };
        let from_file = parsed.build(&setup).unwrap();
        let by_name = StrategyConfig::default_for(info.name).unwrap().build(&setup).unwrap();
        assert_eq!(from_file.name(), info.name);
        assert_eq!(from_file.needs(), by_name.needs(), "{}", info.name);
    }
}

#[test]
fn settings_override_defaults_and_unknown_fields_are_rejected() {
    let c = parse("[strategy]\nname = \"cagrad\"\nc = 0.4\nspace = \"representation\"\n").unwrap();
    match c {
        StrategyConfig::Cagrad(c) => {
            assert_eq!(c.c, 0.4);
            assert_eq!(c.rescale, 1);
        }
        other => panic!("{other:?}"),
    }
    let err = parse("[strategy]\nname = \"cagrad\"\ncc = 0.4\n").unwrap_err().to_string();
    assert!(err.contains("cc"), "{err}");
    let err = parse("[strategy]\nname = \"no_such\"\n").unwrap_err().to_string();
    assert!(err.contains("no_such"), "{err}");
}

#[test]
fn bad_values_name_the_field() {
    let vs = nn::VarStore::new(Device::Cpu);
    let setup = Setup { num_tasks: 2, path: vs.root(), seed: 0 };
    let err = parse("[strategy]\nname = \"cagrad\"\nc = -1.0\n").unwrap().build(&setup).err().unwrap();
    assert!(matches!(err, MtlError::Config(_)));
    assert_eq!(err.to_string(), "cagrad.c = -1: must be finite and >= 0");
    let err = StrategyConfig::default_for("pcgrd").err().unwrap().to_string();
    assert!(err.contains("unknown strategy `pcgrd`") && err.contains("pcgrad"), "{err}");
}
