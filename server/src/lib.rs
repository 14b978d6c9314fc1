//! Brook's production shell around `brook-core`: the pieces that touch the real world.
//!
//! `brook-core` holds the protocol, broker and log logic and never performs I/O itself; this
//! crate supplies the operating-system side: [`storage`] (real files), [`net`] (the tokio
//! listener, Kafka framing and `sendfile` fetch), [`config`] (flags and TOML) and [`alloc`]
//! (the allocator that keeps hostile length fields from aborting the process).

pub mod alloc;
pub mod config;
pub mod identity;
pub mod net;
pub mod node;
pub mod peer;
pub mod storage;
pub mod tools;
