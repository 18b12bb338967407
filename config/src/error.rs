//! What can be wrong with a configuration, naming the file and the key.

use std::path::PathBuf;

/// A configuration that cannot be used. Every variant names the file, and
/// where it applies the dotted key (e.g. `tls.files.cert_file`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {} is not valid TOML: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown, or its value has the wrong type or is out of range.
    #[error("config file {}: key `{key}`: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}
