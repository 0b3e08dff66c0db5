//! Email composition. TODO(helper)
