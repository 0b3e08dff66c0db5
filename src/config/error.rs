//! The one error of the configuration step.

use crate::redact;

/// A configuration value that cannot be used; the message starts with the option's name (or
/// the variable's, for `*_FILE` and `*_PASSWORD`, or `<file>: <key path>` for the config
/// file). Any URL in it is shown redacted.
#[derive(Debug, thiserror::Error)]
#[error("{}", redact::text(.0))]
pub struct ConfigError(pub String);
