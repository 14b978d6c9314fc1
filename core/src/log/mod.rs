//! The partition commit log.
