//! Brook's production shell around `brook-core`: the pieces that touch the real world.
//!
//! `brook-core` holds the protocol and log logic and never performs I/O itself; this crate
//! supplies the operating-system side of its interfaces. So far that is [`storage`], the
//! real-file implementation of the core's `Storage` trait. It is not a library for clients.

pub mod storage;
