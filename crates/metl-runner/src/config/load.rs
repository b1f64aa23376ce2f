//! Reading a TOML configuration with `--set key=value` overrides, with errors that name
//! the file, the field and the problem.

use crate::error::bad_input;
use serde::de::DeserializeOwned;
use std::path::Path;
use toml::{Table, Value};

/// Parses the value of a `--set` override: a TOML value (`0.4`, `true`, `[1, 2]`,
/// `"text"`), or a bare string when it is not valid TOML (`--set model.backbone=conv4`).
pub fn parse_override_value(text: &str) -> Value {
    let wrapped = format!("v = {text}");
    match wrapped.parse::<Table>() {
        Ok(mut table) => table.remove("v").unwrap_or_else(|| Value::String(text.to_owned())),
        Err(_) => Value::String(text.to_owned()),
    }
}

/// Applies `key.path=value` overrides to a parsed TOML table, creating tables as needed.
pub fn apply_overrides(table: &mut Table, overrides: &[String]) -> anyhow::Result<()> {
    for item in overrides {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            bad_input(format!("--set {item}: expected key=value, e.g. meta.maml.inner_lr=0.4"))
        })?;
        let parts: Vec<&str> = key.trim().split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad_input(format!("--set {item}: `{key}` is not a dotted field name")));
        }
        let mut current = &mut *table;
        for (depth, part) in parts[..parts.len() - 1].iter().enumerate() {
            let entry = current.entry(part.to_string()).or_insert_with(|| Value::Table(Table::new()));
            current = match entry {
                Value::Table(t) => t,
                other => {
                    return Err(bad_input(format!(
                        "--set {item}: `{}` is a {}, not a table",
                        parts[..=depth].join("."),
                        other.type_str()
                    )))
                }
            };
        }
        current.insert(parts[parts.len() - 1].to_owned(), parse_override_value(value.trim()));
    }
    Ok(())
}

/// Deserialises `table` into `T`, reporting the dotted path of the offending field.
pub fn from_table<T: DeserializeOwned>(table: Table, origin: &str) -> anyhow::Result<T> {
    let value = Value::Table(table);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        // toml adds "in `table`" on a second line; the path already says where.
        let inner = e.into_inner().to_string();
        let inner = inner.lines().next().unwrap_or_default().trim_end();
        if path == "." || path.is_empty() {
            bad_input(format!("{origin}: {inner}"))
        } else {
            bad_input(format!("{origin}: {path}: {inner}"))
        }
    })
}

/// Reads the TOML file at `path`, applies `overrides`, and deserialises it into `T`.
pub fn load<T: DeserializeOwned>(path: &Path, overrides: &[String]) -> anyhow::Result<(T, Table)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad_input(format!("cannot read config {}: {e}", path.display())))?;
    load_str(&text, &path.display().to_string(), overrides)
}

/// Like [`load`] from TOML text; `origin` names it in errors.
pub fn load_str<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> anyhow::Result<(T, Table)> {
    let mut table: Table = text.parse().map_err(|e: toml::de::Error| {
        let message = e.message().to_owned();
        let line = e.span().map(|s| text[..s.start].lines().count().max(1));
        match line {
            Some(line) => bad_input(format!("{origin}:{line}: {message}")),
            None => bad_input(format!("{origin}: {message}")),
        }
    })?;
    apply_overrides(&mut table, overrides)?;
    let config = from_table(table.clone(), origin)?;
    Ok((config, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Root {
        meta: Meta,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Meta {
        inner_lr: f64,
        #[serde(default)]
        name: String,
    }

    #[test]
    fn overrides_parse_values_and_strings() {
        let (root, _) = load_str::<Root>(
            "[meta]\ninner_lr = 0.4\n",
            "c.toml",
            &["meta.inner_lr=0.1".into(), "meta.name=maml".into()],
        )
        .unwrap();
        assert_eq!(root.meta, Meta { inner_lr: 0.1, name: "maml".into() });
    }

    #[test]
    fn errors_name_the_field() {
        let err = load_str::<Root>("[meta]\ninner_lrr = 0.4\n", "c.toml", &[]).unwrap_err().to_string();
        assert!(err.starts_with("c.toml: meta.inner_lrr: unknown field `inner_lrr`"), "{err}");
        assert_eq!(err.lines().count(), 1);
        let err = load_str::<Root>("[meta]\ninner_lr = \"x\"\n", "c.toml", &[]).unwrap_err().to_string();
        assert!(err.starts_with("c.toml: meta.inner_lr: invalid type"), "{err}");
        let err = load_str::<Root>("[meta\n", "c.toml", &[]).unwrap_err().to_string();
        assert!(err.starts_with("c.toml:1:"), "{err}");
        let err =
            load_str::<Root>("[meta]\ninner_lr = 1\n", "c.toml", &["meta".into()]).unwrap_err().to_string();
        assert!(err.contains("expected key=value"), "{err}");
    }
}
