//! `brook-python`: the native half of the `brook` Python package (module `brook._brook`,
//! re-exported by `brook/__init__.py`). Thin pyo3 classes over `brook-client`'s blocking
//! facade: [`producer::Producer`], [`consumer::Consumer`] and [`admin::Admin`].
//!
//! Rules every class follows: a call that may wait on the network releases the GIL
//! (`Python::allow_threads`) and waits in slices, checking for Ctrl-C between them where it
//! may wait long; cheap calls (`Producer.send` with metadata cached) keep the GIL, since
//! releasing it costs more than the call. Errors become the exception classes of
//! `brook/_errors.py` (see [`errors`]). This crate has no Rust tests: an extension module
//! leaves libpython's symbols unresolved, so it is tested from Python (`python/tests`).

use pyo3::prelude::*;

pub mod admin;
pub mod consumer;
pub mod convert;
pub mod errors;
pub mod producer;
pub mod types;

/// Rust allocations of the extension (not Python's objects) use mimalloc: records are
/// allocated on the Python thread and freed on the client's runtime thread, which glibc's
/// malloc serialises on an arena lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The native module `brook._brook`.
#[pymodule]
fn _brook(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<producer::Producer>()?;
    m.add_class::<producer::DeliveryFuture>()?;
    m.add_class::<consumer::Consumer>()?;
    m.add_class::<consumer::CommitFuture>()?;
    m.add_class::<admin::Admin>()?;
    m.add_class::<admin::GroupListing>()?;
    m.add_class::<admin::GroupDescription>()?;
    m.add_class::<admin::MemberDescription>()?;
    m.add_class::<types::Record>()?;
    m.add_class::<types::RecordMetadata>()?;
    m.add_class::<types::TopicPartition>()?;
    m.add_class::<types::TopicDescription>()?;
    m.add_class::<types::PartitionDescription>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
