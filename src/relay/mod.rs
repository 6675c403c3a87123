//! `eventrelay`, the in-order event relay of issue #5, and `eventsim`, its verifier.
//!
//! One event source sends numbered events, out of order; the relay puts them back in order in a
//! fixed window and forwards each line, unchanged, to the user clients it concerns (the protocol
//! of the follower-maze challenge). Memory is bounded whatever the stream length: the window is a
//! fixed ring, the follow graph holds only the follows in force, and each client's outgoing
//! buffer has a hard limit. DESIGN.md ("The event relay") gives the reasons.
//!
//! - [`event`]: one line, parsed; [`window`]: the reorder ring; [`follow`]: the follow graph;
//! - [`client`]: one user client and its buffer; [`source`]: the source connection's lines;
//! - [`server`]: the single-threaded poll loop tying them together; [`args`]: the command line;
//! - [`sim`]: `eventsim`, which plays the source and the clients and checks every line.

pub mod args;
pub mod client;
pub mod event;
pub mod follow;
pub mod hash;
pub mod server;
pub mod sim;
pub mod source;
pub mod window;
