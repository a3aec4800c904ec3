//! Reading a [`HostConfig`]: TOML documents and files, `WAVE_*` environment variables, and
//! the errors that name what is wrong.

use std::path::{Path, PathBuf};

use super::HostConfig;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A TOML document did not parse into the fields (unknown key, bad value).
    #[error("{origin}: {message}")]
    Toml {
        /// Where it came from (a path, or "config").
        origin: String,
        /// What is wrong, with the key.
        message: String,
    },
    /// An environment variable named no field, or held a bad value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read.
    #[error("reading {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The fields parse, but do not fit together.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key at fault.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

pub(super) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

/// The sections of the config, for telling `WAVE_SCHED_POLICY` (section `sched`, key
/// `policy`) from `WAVE_IPU_CP` (top-level key `ipu_cp`).
const SECTIONS: [&str; 6] = ["port", "control", "sched", "tier", "agent", "liveness"];

/// The top-level keys that are not sections.
const TOP_KEYS: [&str; 6] = ["ip", "gateway", "workers", "cpus", "spin_when_idle", "ipu_cp"];

/// The keys of `section`.
fn section_keys(section: &str) -> &'static [&'static str] {
    match section {
        "port" => &["kind", "iface", "tx", "fd", "len", "device", "vdev_args", "mbufs"],
        "control" => &[
            "mode",
            "backlog",
            "tenant",
            "max_per_listener",
            "syn_rate_per_s",
            "syn_burst",
            "prestage_depth",
        ],
        "sched" => &["mode", "policy", "slice_us", "prestage_depth", "tasks_max", "prefetch"],
        "agent" => &["cpu", "spin", "event_batch", "delay_ns"],
        "tier" => &[
            "mode",
            "arena_mb",
            "epoch_ms",
            "promotion_target_per_min",
            "threshold_start",
            "park_max_per_epoch",
            "demote_max_per_epoch",
            "hot_skip_epochs",
        ],
        "liveness" => &["heartbeat_us", "peer_timeout_ms", "reattach_ms", "connect_timeout_ms"],
        _ => &[],
    }
}

/// Variables with the prefix that are not fields (the POSIX layer's config file path).
const ENV_NOT_FIELDS: [&str; 1] = ["WAVE_CONFIG"];

impl HostConfig {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<HostConfig, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::Toml { origin: "config".into(), message: e.to_string() })
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<HostConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.into(), message: e.to_string() })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            origin: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// The defaults, then the file `WAVE_CONFIG` names (if set), then the other `WAVE_*`
    /// variables.
    pub fn from_env() -> Result<HostConfig, ConfigError> {
        let base = match std::env::var_os("WAVE_CONFIG") {
            Some(path) => HostConfig::from_file(Path::new(&path))?,
            None => HostConfig::default(),
        };
        base.with_vars(std::env::vars())
    }

    /// This config with `vars` applied: each `WAVE_*` variable (but `WAVE_CONFIG`) sets the
    /// field it names; other variables are ignored.
    pub fn with_vars(
        self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<HostConfig, ConfigError> {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(var, _)| var.starts_with("WAVE_") && !ENV_NOT_FIELDS.contains(&var.as_str()))
            .collect();
        vars.sort(); // one order, whatever the environment's
        let mut table =
            toml::Table::try_from(&self).map_err(|e| invalid("config", e.to_string()))?;
        let applied: Vec<String> = vars.iter().map(|(var, _)| var.clone()).collect();
        for (var, text) in vars {
            let name = var["WAVE_".len()..].to_ascii_lowercase();
            let value = env_value(&text);
            let unknown =
                || ConfigError::Env { var: var.clone(), message: "names no field".into() };
            match SECTIONS.iter().find(|s| name.starts_with(&format!("{s}_"))) {
                Some(&section) => {
                    let key = name[section.len() + 1..].to_owned();
                    if !section_keys(section).contains(&key.as_str()) {
                        return Err(unknown());
                    }
                    let entry = table
                        .entry(section)
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if let toml::Value::Table(inner) = entry {
                        inner.insert(key, value);
                    }
                }
                None if TOP_KEYS.contains(&name.as_str()) => {
                    table.insert(name, value);
                }
                None => return Err(unknown()),
            }
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e| ConfigError::Env { var: applied.join(", "), message: e.to_string() })
    }
}

/// A variable's text as a TOML value (`4`, `true`, `[0, 1]`, `"x"`), or as a string.
fn env_value(text: &str) -> toml::Value {
    let document = format!("value = {text}");
    match document.parse::<toml::Table>() {
        Ok(mut table) => table.remove("value").unwrap_or_else(|| text.into()),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_every_section_can_be_named_by_a_variable() {
        // Every field a section serializes (all but unset options) is in its key list, so no
        // field is out of the environment's reach; and no listed key names no field.
        let table = toml::Table::try_from(HostConfig::default()).unwrap();
        for section in SECTIONS.iter().filter(|&&s| s != "port") {
            let fields = table[*section].as_table().unwrap();
            for field in fields.keys() {
                assert!(section_keys(section).contains(&field.as_str()), "{section}.{field}");
            }
            for key in section_keys(section) {
                let var = format!("WAVE_{}_{}", section.to_uppercase(), key.to_uppercase());
                let refused = HostConfig::default().with_vars([(var.clone(), "x".into())]);
                let unknown = |message: &str| message == "names no field";
                let named =
                    matches!(&refused, Err(ConfigError::Env { message, .. }) if unknown(message));
                assert!(!named, "{var}");
            }
        }
        for key in TOP_KEYS {
            assert!(table.contains_key(key) || ["gateway", "cpus", "ipu_cp"].contains(&key));
        }
    }
}
