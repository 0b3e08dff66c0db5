//! Durations as people write and read them. TODO(helper)
