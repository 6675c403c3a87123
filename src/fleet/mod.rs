//! Fleet: config file, supervisor, durable stats (to be written).
