//! Generates `brook.h` with cbindgen into `$OUT_DIR` and copies it to `<target>/include/`.

use std::env;
use std::path::{Path, PathBuf};

/// The crate's sources that declare the C API.
const SOURCES: [&str; 5] = [
    "src/lib.rs",
    "src/error.rs",
    "src/producer.rs",
    "src/consumer.rs",
    "src/util.rs",
];

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("bindings/ffi/cbindgen.toml is readable and valid");
    let mut builder = cbindgen::Builder::new().with_config(config);
    for source in SOURCES {
        builder = builder.with_src(crate_dir.join(source));
    }
    let bindings = builder.generate().expect("cbindgen generates brook.h");
    let header = out_dir.join("brook.h");
    bindings.write_to_file(&header);

    let include_dir = target_dir(&crate_dir, &out_dir).join("include");
    std::fs::create_dir_all(&include_dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", include_dir.display()));
    let copy = include_dir.join("brook.h");
    std::fs::copy(&header, &copy)
        .unwrap_or_else(|err| panic!("cannot copy brook.h to {}: {err}", copy.display()));
}

/// The target directory: `CARGO_TARGET_DIR` (relative to the workspace root), else the
/// nearest ancestor of `OUT_DIR` holding cargo's `CACHEDIR.TAG`, else four levels up from
/// `OUT_DIR` (`<target>/<profile>/build/<pkg>/out`).
fn target_dir(crate_dir: &Path, out_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return dir;
        }
        return crate_dir.join("../..").join(dir);
    }
    if let Some(dir) = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
    {
        return dir.to_path_buf();
    }
    out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR is <target>/<profile>/build/<pkg>/out")
        .to_path_buf()
}
