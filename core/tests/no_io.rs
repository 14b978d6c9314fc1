//! Architecture invariant: `brook-core` does no I/O of its own (STYLE.md habit 3).
//! Scans every source file of the crate for the calls that would break it.

use std::path::{Path, PathBuf};

/// Patterns that mean I/O, threads, clocks or ambient randomness.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::thread",
    "std::process",
    "std::env",
    "tokio",
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "rand::random",
    "File::open",
    "File::create",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_sources_do_no_io_read_no_clock_and_spawn_no_threads() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 5, "found the sources: {files:?}");
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for pattern in FORBIDDEN {
                if code.contains(pattern) {
                    violations.push(format!("{}:{}: {pattern}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "I/O in brook-core:\n{}",
        violations.join("\n")
    );
}

#[test]
fn core_manifest_depends_on_no_runtime_or_io_crate() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("read manifest");
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    for runtime in ["tokio", "async-std", "rand", "memmap2", "mio"] {
        let listed = dependencies
            .lines()
            .any(|l| l.trim_start().starts_with(runtime));
        assert!(!listed, "brook-core must not depend on {runtime}");
    }
}
