//! The companion HTTP backend (to be written).
