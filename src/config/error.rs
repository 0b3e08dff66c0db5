//! The one error of the configuration step, in a file of its own because every part of the
//! step returns it: the file reader included, which must not depend on the step it feeds.

use crate::redact;

/// A configuration value that cannot be used; the message starts with the option's name (or
/// the variable's, for `*_FILE` and `*_PASSWORD`, or `<file>: <key path>` for the config
/// file). Any URL in it is shown redacted.
#[derive(Debug, thiserror::Error)]
#[error("{}", redact::text(.0))]
pub struct ConfigError(pub String);
