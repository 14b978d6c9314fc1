//! The `brook` command.
fn main() {}
