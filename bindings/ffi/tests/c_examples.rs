//! The C examples against a real broker: builds `brook-ffi` (static library and generated
//! header), compiles `examples/*.c` with gcc, starts `brook server` on a free port in a
//! temporary directory, then runs the producer (N records), the group consumer (reads N,
//! commits) and `headers_and_seek` (headers, timestamps, assign and seek), plainly and
//! under valgrind, which must report no leaks.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Records the plain run sends and reads.
const RECORDS_PLAIN: usize = 200;
/// Records the valgrind run sends and reads (valgrind is slow).
const RECORDS_VALGRIND: usize = 20;
/// How long the broker may take to start listening.
const SERVER_START_MS_MAX: u64 = 15_000;

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory and the profile directory this test binary was built into
/// (`<target>/<profile>/deps/c_examples-…`).
fn target_dirs() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe.ancestors().nth(2).expect("<profile>/deps/<exe>");
    let target = profile.parent().expect("<target>/<profile>");
    (target.to_path_buf(), profile.to_path_buf())
}

/// Runs `cargo build` with `args` into `target`, for the profile of `profile_dir`.
fn cargo_build(target: &Path, profile_dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command.arg("build");
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let status = command
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// Compiles `examples/<name>.c` against the header and the static library.
fn compile(name: &str, target: &Path, profile: &Path, out: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.c"));
    let binary = out.join(name);
    let output = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-o"])
        .arg(&binary)
        .arg("-I")
        .arg(target.join("include"))
        .arg(&source)
        .arg(profile.join("libbrook_ffi.a"))
        .args(["-lpthread", "-ldl", "-lm"])
        .output()
        .expect("gcc runs");
    assert!(
        output.status.success(),
        "gcc {name}.c failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

/// A `brook server` killed on drop.
struct Server {
    child: Child,
    bootstrap: String,
}

impl Server {
    fn start(brook: &Path, data_dir: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let bootstrap = format!("127.0.0.1:{port}");
        let child = Command::new(brook)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &bootstrap, "--log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .expect("brook server starts");
        let server = Server { child, bootstrap };
        let deadline = Instant::now() + Duration::from_millis(SERVER_START_MS_MAX);
        while TcpStream::connect(&server.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "brook server did not listen in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program` with `args`, under valgrind if `valgrind`; asserts it exits 0.
fn run(program: &Path, args: &[&str], valgrind: bool) -> Output {
    let mut command = if valgrind {
        let mut command = Command::new("valgrind");
        command
            .args(["--leak-check=full", "--error-exitcode=1"])
            .arg(program);
        command
    } else {
        Command::new(program)
    };
    let output = command.args(args).output().expect("the example runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {args:?} (valgrind: {valgrind}) failed: {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
    );
    if valgrind {
        for line in stderr
            .lines()
            .filter(|l| l.contains("lost:") || l.contains("ERROR SUMMARY"))
        {
            eprintln!("valgrind {}: {line}", program.display());
        }
        assert!(
            stderr.contains("definitely lost: 0 bytes") || stderr.contains("no leaks are possible"),
            "valgrind reports a leak in {}:\n{stderr}",
            program.display()
        );
    }
    output
}

/// Whether a `valgrind` binary is on the PATH.
fn valgrind_present() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn c_examples_produce_and_consume_in_a_group_without_leaks() {
    let (target, profile) = target_dirs();
    cargo_build(&target, &profile, &["-p", "brook-ffi"]);
    let brook = match std::env::var_os("BROOK_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let path = profile.join("brook");
            if !path.is_file() {
                cargo_build(&target, &profile, &["-p", "brook-server", "--bin", "brook"]);
            }
            path
        }
    };
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let producer = compile("producer", &target, &profile, scratch.path());
    let consumer = compile("group_consumer", &target, &profile, scratch.path());
    let headers_and_seek = compile("headers_and_seek", &target, &profile, scratch.path());
    let server = Server::start(&brook, &scratch.path().join("data"));
    let bootstrap = server.bootstrap.as_str();

    let n = RECORDS_PLAIN.to_string();
    run(&producer, &[bootstrap, "c-plain", &n], false);
    let output = run(&consumer, &[bootstrap, "g-plain", "c-plain", &n], false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("consumed and committed {RECORDS_PLAIN} records")),
        "{stdout}"
    );
    // The commit held: the group resumes after the records read (one partition by default).
    run(&producer, &[bootstrap, "c-plain", &n], false);
    let output = run(&consumer, &[bootstrap, "g-plain", "c-plain", &n], false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("c-plain-0@{RECORDS_PLAIN}: ")),
        "the group did not resume at its committed offset:\n{stdout}"
    );

    let output = run(&headers_and_seek, &[bootstrap, "c-headers", &n], false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("checked on {RECORDS_PLAIN} records")),
        "{stdout}"
    );

    if !valgrind_present() {
        eprintln!("valgrind is missing: skipping the leak check");
        return;
    }
    let n = RECORDS_VALGRIND.to_string();
    run(&producer, &[bootstrap, "c-valgrind", &n], true);
    run(
        &consumer,
        &[bootstrap, "g-valgrind", "c-valgrind", &n],
        true,
    );
    run(
        &headers_and_seek,
        &[bootstrap, "c-headers-valgrind", &n],
        true,
    );
}
