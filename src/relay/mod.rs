//! The in-order event relay (to be written).
