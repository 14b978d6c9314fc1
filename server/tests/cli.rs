//! `brook server` refuses bad settings with one clear line and a non-zero exit.

use std::net::TcpListener;
use std::process::Command;

fn brook() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brook"))
}

fn run(args: &[&str]) -> (i32, String) {
    let output = brook().args(args).output().expect("run brook");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn cli_port_in_use_is_one_error_line_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, stderr) = run(&[
        "server",
        "--data-dir",
        data,
        "--listen",
        &address,
        "--log-level",
        "error",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("error: cannot listen on {address}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn cli_unusable_data_dir_and_bad_values_name_the_problem() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let inside_a_file = format!("{}/data", file.path().display());
    let (code, stderr) = run(&["server", "--data-dir", &inside_a_file]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot use data directory"),
        "{stderr}"
    );

    let (code, stderr) = run(&["server", "--num-partitions", "0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--num-partitions"), "{stderr}");

    let (code, stderr) = run(&["server", "--listen", "not-an-address"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--listen"), "{stderr}");

    let (code, stderr) = run(&["server", "--no-such-flag"]);
    assert_eq!(code, 2, "clap's usage error");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");

    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "no-such-key = 1\n").unwrap();
    let (code, stderr) = run(&["server", "--config", config.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no-such-key"), "{stderr}");
}
