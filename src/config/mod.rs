//! Configuration: the YAML file of SPEC §2, read once at the door.
//!
//! The way through, in order: `file.rs` is the file as written (serde,
//! `deny_unknown_fields`, the SPEC's defaults), `values.rs` its leaf types
//! (`${VAR}` interpolation, durations, sizes, rates, secrets), `validate/`
//! checks every rule, one file per top-level key, and produces the
//! [`Config`] of `model.rs`, the documented types the rest of gatehouse runs
//! on. Every error names the file and the key path, YAML errors also the line
//! and column, and none quotes a secret.

mod file;
mod model;
mod validate;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;

/// Default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/gatehouse.yaml";

/// A config that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// Key path such as `routes[2].auth`; empty when the whole file is at fault.
    pub key: String,
    /// What is wrong, with line and column where YAML reported them.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parses and validates config text as if read from `path` (relative paths in
/// it resolve against `path`'s folder).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: file::FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." || key == "?" {
            String::new()
        } else {
            key
        };
        let message = e.into_inner().to_string();
        // serde_yaml starts some messages with the path already.
        let message = match message.strip_prefix(&format!("{key}: ")) {
            Some(rest) if !key.is_empty() => rest.to_owned(),
            _ => message,
        };
        ConfigError {
            file: path.to_owned(),
            key,
            message,
        }
    })?;
    validate::validate(path, raw)
}
