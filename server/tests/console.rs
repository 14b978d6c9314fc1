//! The console tools against a real `brook server` process: `brook topics`, `brook produce`,
//! `brook consume`, `brook groups` and `brook transactions` run as separate processes, the
//! way an operator runs them. A transaction to look at is opened with raw Kafka requests
//! (`Wire`), since no console tool produces transactionally.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brook_core::ErrorCode;
use brook_server::tools::produce::partition_for_key;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest,
    ProducerId, RequestHeader, ResponseHeader, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BROOK: &str = env!("CARGO_BIN_EXE_brook");
/// Longest any one console command may run before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A `brook server` on a free port with its data in a temporary directory; stopped with
/// SIGTERM when dropped.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(BROOK)
            .args(["server", "--listen", &addr, "--log-level", "warn"])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start brook server");
        let server = Server {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&server.addr).is_err() {
            assert!(Instant::now() < deadline, "brook server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Runs `brook ARGS --bootstrap ADDR` with `stdin` and waits for it.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--bootstrap", &self.addr]);
        run_brook(&all, stdin)
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "brook {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `brook ARGS` with `stdin`, killing it if it outlives [`COMMAND_TIMEOUT`].
fn run_brook(args: &[&str], stdin: &str) -> Output {
    let mut child = spawn_brook(args);
    // A command that fails early stops reading: a broken pipe here is not the test's concern.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    wait_output(child, args)
}

fn spawn_brook(args: &[&str]) -> Child {
    Command::new(BROOK)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start brook")
}

/// Waits for `child` and collects its output (read while it runs, so a full pipe cannot
/// stall it); kills it if it outlives [`COMMAND_TIMEOUT`].
fn wait_output(child: Child, args: &[&str]) -> Output {
    let pid = Pid::from_raw(child.id() as i32);
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => output.expect("collect output"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("brook {args:?} ran longer than {COMMAND_TIMEOUT:?}");
        }
    }
}

/// Asserts a failed command: non-zero exit, one `error: …` line containing `expected`, and
/// no panic.
fn assert_error(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "expected failure, got: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(
        stderr.contains(expected),
        "stderr lacks {expected:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn console_topics_create_list_describe_delete() {
    let server = Server::start();
    let created = server.ok(
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=86400000",
        ],
        "",
    );
    assert_eq!(created, "Created topic orders.\n");
    server.ok(&["topics", "create", "audit", "--partitions", "1"], "");
    assert_eq!(server.ok(&["topics", "list"], ""), "audit\norders\n");

    let described = server.ok(&["topics", "describe", "orders"], "");
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines.len(), 4, "{described}");
    assert!(lines[0].starts_with("Topic: orders\t"), "{described}");
    assert!(lines[0].contains("PartitionCount: 3\tReplicationFactor: 1"));
    if lines[0].contains("Configs:") {
        // Only when the broker serves DescribeConfigs.
        assert!(lines[0].contains("retention.ms=86400000"), "{described}");
    }
    for (index, line) in lines[1..].iter().enumerate() {
        assert_eq!(
            *line,
            format!("\tTopic: orders\tPartition: {index}\tLeader: 1\tReplicas: 1\tIsr: 1")
        );
    }

    let again = server.run(&["topics", "create", "orders", "--partitions", "1"], "");
    assert_error(&again, "TOPIC_ALREADY_EXISTS");
    let bad_config = server.run(&["topics", "create", "x", "--config", "oops"], "");
    assert_error(&bad_config, "KEY=VALUE");

    assert_eq!(
        server.ok(&["topics", "delete", "orders"], ""),
        "Deleted topic orders.\n"
    );
    assert_eq!(server.ok(&["topics", "list"], ""), "audit\n");
    assert_error(
        &server.run(&["topics", "describe", "orders"], ""),
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
    assert_error(
        &server.run(&["topics", "delete", "orders"], ""),
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
}

#[test]
fn console_produce_then_consume_from_beginning_each_codec() {
    let server = Server::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("lines-{codec}");
        server.ok(&["topics", "create", &topic, "--partitions", "1"], "");
        // 1,200 lines: more than one batch and more than one request.
        let lines: Vec<String> = (0..1200)
            .map(|i| format!("key{}:value {i}", i % 7))
            .collect();
        let input = lines.join("\n") + "\n";
        server.ok(
            &[
                "produce",
                &topic,
                "--key-separator",
                ":",
                "--compression",
                codec,
            ],
            &input,
        );
        let consumed = server.ok(
            &[
                "consume",
                &topic,
                "--from-beginning",
                "--max-messages",
                "1200",
                "--print-key",
                "--key-separator",
                ":",
            ],
            "",
        );
        assert_eq!(consumed, input, "codec {codec}");
        let values = server.ok(
            &["consume", &topic, "--from-beginning", "--max-messages", "2"],
            "",
        );
        assert_eq!(values, "value 0\nvalue 1\n", "codec {codec}");
    }
}

#[test]
fn console_keys_choose_partitions_by_murmur2() {
    let server = Server::start();
    server.ok(&["topics", "create", "keyed", "--partitions", "3"], "");
    let lines: Vec<String> = (0..90).map(|i| format!("user-{}|{i}", i % 10)).collect();
    server.ok(
        &["produce", "keyed", "--key-separator", "|"],
        &(lines.join("\n") + "\n"),
    );
    let mut total = 0;
    for partition in 0..3 {
        let out = server.ok(
            &[
                "consume",
                "keyed",
                "--from-beginning",
                "--partition",
                &partition.to_string(),
                "--print-key",
                "--key-separator",
                "|",
                "--timeout-ms",
                "1000",
            ],
            "",
        );
        let expected: Vec<&String> = lines
            .iter()
            .filter(|line| {
                let key = line.split('|').next().unwrap();
                partition_for_key(key.as_bytes(), 3) == partition
            })
            .collect();
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(got, expected, "partition {partition}");
        total += got.len();
    }
    assert_eq!(total, 90);
    // Unkeyed records go round robin: 6 lines put 2 in each partition.
    server.ok(&["topics", "create", "plain", "--partitions", "3"], "");
    server.ok(&["produce", "plain"], "a\nb\nc\nd\ne\nf\n");
    let first = server.ok(
        &[
            "consume",
            "plain",
            "--from-beginning",
            "--partition",
            "0",
            "--timeout-ms",
            "1000",
        ],
        "",
    );
    assert_eq!(first, "a\nd\n");
}

#[test]
fn console_consume_without_from_beginning_starts_at_the_end() {
    let server = Server::start();
    server.ok(&["topics", "create", "live", "--partitions", "2"], "");
    server.ok(&["produce", "live"], "old 1\nold 2\n");
    let args = [
        "consume",
        "live",
        "--max-messages",
        "1",
        "--timeout-ms",
        "30000",
        "--bootstrap",
        &server.addr,
    ];
    let consumer = spawn_brook(&args);
    // Keep producing until the consumer, which started at the end, has seen one record.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut consumer = Some(consumer);
    while Instant::now() < deadline {
        server.ok(&["produce", "live"], "new\n");
        let running = consumer.as_mut().unwrap();
        if running.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = wait_output(consumer.take().unwrap(), &args);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "new\n");
}

#[test]
fn console_errors_are_one_line_and_exit_non_zero() {
    let server = Server::start();
    assert_error(
        &server.run(&["consume", "missing", "--timeout-ms", "100"], ""),
        "topic missing: UNKNOWN_TOPIC_OR_PARTITION (3)",
    );
    server.ok(&["topics", "create", "two", "--partitions", "2"], "");
    assert_error(
        &server.run(&["produce", "two", "--partition", "7"], "x\n"),
        "--partition 7",
    );
    let skipped = server.run(&["produce", "two", "--key-separator", "="], "k=v\nnokey\n");
    assert_error(&skipped, "no key separator");
    assert!(String::from_utf8_lossy(&skipped.stderr).contains("1 of 2 records failed"));

    // Nothing listens on the port of a listener that was just closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let nowhere = format!("127.0.0.1:{port}");
    for args in [
        vec!["topics", "list"],
        vec!["produce", "two"],
        vec!["consume", "two"],
    ] {
        let mut args = args;
        args.extend(["--bootstrap", &nowhere]);
        assert_error(
            &run_brook(&args, "x\n"),
            &format!("cannot connect to {nowhere}"),
        );
    }
}

/// Polls `brook groups describe GROUP` until `ready` accepts its output.
fn wait_for_group(server: &Server, group: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = server.run(&["groups", "describe", group], "");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        if output.status.success() && ready(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never got ready: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The partition rows of `brook groups describe`: (partition, current, log end, lag).
fn offset_rows(described: &str) -> Vec<(String, String, String, String)> {
    described
        .lines()
        .skip_while(|line| !line.starts_with("TOPIC"))
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (
                cells[1].to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
                cells[4].to_string(),
            )
        })
        .collect()
}

#[test]
fn console_groups_list_and_describe_after_consume_group() {
    let server = Server::start();
    server.ok(&["topics", "create", "events", "--partitions", "2"], "");
    let lines: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    server.ok(&["produce", "events"], &(lines.join("\n") + "\n"));
    let group_args = [
        "consume",
        "events",
        "--group",
        "readers",
        "--from-beginning",
        "--timeout-ms",
        "10000",
    ];
    let mut first: Vec<String> = server
        .ok(&[&group_args[..], &["--max-messages", "10"]].concat(), "")
        .lines()
        .map(str::to_string)
        .collect();
    first.sort();
    let mut expected = lines.clone();
    expected.sort();
    assert_eq!(first, expected);

    let listed = server.ok(&["groups", "list"], "");
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["GROUP", "STATE", "PROTOCOL-TYPE"], "{listed}");
    assert!(
        rows.contains(&vec!["readers", "Empty", "consumer"]),
        "{listed}"
    );

    let described = server.ok(&["groups", "describe", "readers"], "");
    assert!(
        described.starts_with("Group: readers\tState: Empty\tProtocolType: consumer\t"),
        "{described}"
    );
    assert!(described.contains("No active members."), "{described}");
    let rows = offset_rows(&described);
    assert_eq!(rows.len(), 2, "{described}");
    for (partition, current, end, lag) in &rows {
        assert_eq!(current, end, "partition {partition}: {described}");
        assert_eq!(lag, "0", "{described}");
    }
    let total: i64 = rows.iter().map(|r| r.1.parse::<i64>().unwrap()).sum();
    assert_eq!(total, 10, "{described}");

    // The committed offsets are where a new member starts: nothing old is printed again,
    // and a stop in the middle of a batch commits exactly what was printed.
    server.ok(
        &["produce", "events", "--partition", "0"],
        "n1\nn2\nn3\nn4\n",
    );
    let some = server.ok(&[&group_args[..], &["--max-messages", "3"]].concat(), "");
    assert_eq!(some, "n1\nn2\nn3\n");
    let rest = server.ok(&[&group_args[..4], &["--timeout-ms", "1500"]].concat(), "");
    assert_eq!(rest, "n4\n");
    let described = server.ok(&["groups", "describe", "readers"], "");
    assert!(
        offset_rows(&described).iter().all(|r| r.3 == "0"),
        "{described}"
    );
}

#[test]
fn console_groups_two_members_split_four_partitions_exactly_once() {
    let server = Server::start();
    server.ok(&["topics", "create", "split", "--partitions", "4"], "");
    let args = [
        "consume",
        "split",
        "--group",
        "pair",
        "--from-beginning",
        "--timeout-ms",
        "8000",
        "--max-messages",
        "400",
        "--bootstrap",
        &server.addr,
    ];
    let first = spawn_brook(&args);
    let second = spawn_brook(&args);
    // Records go out only once both members own two partitions each.
    wait_for_group(&server, "pair", |text| {
        text.contains("State: Stable")
            && text.contains("Members: 2")
            && text.lines().filter(|l| l.starts_with("split ")).count() == 4
    });
    let lines: Vec<String> = (0..400).map(|i| format!("record {i}")).collect();
    server.ok(&["produce", "split"], &(lines.join("\n") + "\n"));
    let outputs = [wait_output(first, &args), wait_output(second, &args)];
    let mut seen: Vec<String> = Vec::new();
    for output in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let printed: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        // Unkeyed records go round robin: 100 per partition, two partitions per member.
        assert_eq!(printed.len(), 200, "{stderr}");
        seen.extend(printed);
    }
    seen.sort();
    let mut expected = lines;
    expected.sort();
    assert_eq!(seen, expected, "every record exactly once");
    let described = server.ok(&["groups", "describe", "pair"], "");
    assert!(described.contains("State: Empty"), "{described}");
    let rows = offset_rows(&described);
    assert_eq!(rows.len(), 4, "{described}");
    assert!(
        rows.iter().all(|r| r.1 == "100" && r.3 == "0"),
        "{described}"
    );
}

#[test]
fn console_groups_reset_offsets_only_when_empty_then_reread() {
    let server = Server::start();
    server.ok(&["topics", "create", "replay", "--partitions", "3"], "");
    let lines: Vec<String> = (0..30).map(|i| format!("r{i}")).collect();
    let input = lines.join("\n") + "\n";
    server.ok(&["produce", "replay"], &input);
    let consume = |extra: &[&str]| {
        let base = ["consume", "replay", "--group", "again", "--from-beginning"];
        let mut printed: Vec<String> = server
            .ok(&[&base[..], extra].concat(), "")
            .lines()
            .map(str::to_string)
            .collect();
        printed.sort();
        printed
    };
    let mut expected = lines.clone();
    expected.sort();
    assert_eq!(
        consume(&["--max-messages", "30", "--timeout-ms", "10000"]),
        expected
    );
    assert!(consume(&["--timeout-ms", "1000"]).is_empty());

    // A running member: the group is not Empty, so neither reset nor delete may touch it.
    let args = [
        "consume",
        "replay",
        "--group",
        "again",
        "--timeout-ms",
        "30000",
        "--bootstrap",
        &server.addr,
    ];
    let member = spawn_brook(&args);
    wait_for_group(&server, "again", |text| text.contains("State: Stable"));
    assert_error(
        &server.run(
            &[
                "groups",
                "reset-offsets",
                "again",
                "--topic",
                "replay",
                "--to-earliest",
            ],
            "",
        ),
        "only while the group is Empty",
    );
    assert_error(
        &server.run(&["groups", "delete", "again"], ""),
        "NON_EMPTY_GROUP",
    );
    // SIGTERM: the member commits, leaves the group and exits normally.
    let _ = kill(Pid::from_raw(member.id() as i32), Signal::SIGTERM);
    let stopped = wait_output(member, &args);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    wait_for_group(&server, "again", |text| text.contains("State: Empty"));

    let reset = server.ok(
        &[
            "groups",
            "reset-offsets",
            "again",
            "--topic",
            "replay",
            "--to-earliest",
        ],
        "",
    );
    let rows: Vec<Vec<&str>> = reset
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]);
    assert_eq!(
        &rows[1..],
        [
            ["again", "replay", "0", "0"],
            ["again", "replay", "1", "0"],
            ["again", "replay", "2", "0"]
        ]
    );
    assert_eq!(
        consume(&["--max-messages", "30", "--timeout-ms", "10000"]),
        expected
    );

    // One partition to an explicit offset (clamped to the log end), then to the end.
    let one = server.ok(
        &[
            "groups",
            "reset-offsets",
            "again",
            "--topic",
            "replay",
            "--partition",
            "1",
            "--to-offset",
            "5",
        ],
        "",
    );
    assert!(one.ends_with("again  replay  1          5\n"), "{one}");
    assert_eq!(consume(&["--timeout-ms", "1500"]).len(), 5);
    server.ok(
        &[
            "groups",
            "reset-offsets",
            "again",
            "--topic",
            "replay",
            "--to-latest",
        ],
        "",
    );
    assert!(consume(&["--timeout-ms", "1000"]).is_empty());
    assert_eq!(
        server.ok(&["groups", "delete", "again"], ""),
        "Deleted group again.\n"
    );
}

#[test]
fn console_groups_errors_are_one_line_and_exit_non_zero() {
    let server = Server::start();
    assert_error(
        &server.run(&["groups", "describe", "nobody"], ""),
        "group nobody: GROUP_ID_NOT_FOUND (69)",
    );
    assert_error(
        &server.run(&["groups", "delete", "nobody"], ""),
        "GROUP_ID_NOT_FOUND",
    );
    assert_error(
        &server.run(
            &[
                "groups",
                "reset-offsets",
                "nobody",
                "--topic",
                "missing",
                "--to-latest",
            ],
            "",
        ),
        "topic missing: UNKNOWN_TOPIC_OR_PARTITION",
    );
    server.ok(&["topics", "create", "one", "--partitions", "1"], "");
    assert_error(
        &server.run(
            &[
                "groups",
                "reset-offsets",
                "g",
                "--topic",
                "one",
                "--to-earliest",
                "--partition",
                "3",
            ],
            "",
        ),
        "--partition 3",
    );
    assert_error(
        &server.run(&["groups", "reset-offsets", "g", "--topic", "one"], ""),
        "--to-earliest",
    );
    assert_error(
        &server.run(&["consume", "one", "--group", "g", "--partition", "0"], ""),
        "--partition",
    );
    assert_error(
        &server.run(
            &["consume", "missing", "--group", "g", "--timeout-ms", "100"],
            "",
        ),
        "UNKNOWN_TOPIC_OR_PARTITION",
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let nowhere = format!("127.0.0.1:{port}");
    assert_error(
        &run_brook(&["groups", "list", "--bootstrap", &nowhere], ""),
        &format!("cannot connect to {nowhere}"),
    );
}

#[test]
fn console_groups_member_joining_mid_stream_rebalances_without_duplicates() {
    let server = Server::start();
    server.ok(&["topics", "create", "moving", "--partitions", "4"], "");
    let chunk =
        |n: usize| -> Vec<String> { (0..200).map(|i| format!("chunk {n} record {i}")).collect() };
    let mut produced: Vec<String> = Vec::new();
    let mut produce = |n: usize| {
        let lines = chunk(n);
        server.ok(&["produce", "moving"], &(lines.join("\n") + "\n"));
        produced.extend(lines);
    };
    produce(0);
    let args = [
        "consume",
        "moving",
        "--group",
        "movers",
        "--from-beginning",
        "--timeout-ms",
        "8000",
        "--bootstrap",
        &server.addr,
    ];
    let first = spawn_brook(&args);
    wait_for_group(&server, "movers", |text| {
        text.contains("State: Stable") && text.contains("Members: 1")
    });
    // The second member joins while records keep arriving: the first one must commit what
    // it printed before giving partitions away (REBALANCE_IN_PROGRESS → commit → rejoin).
    let second = spawn_brook(&args);
    for n in 1..=10 {
        produce(n);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_group(&server, "movers", |text| {
        text.contains("State: Stable") && text.contains("Members: 2")
    });
    produce(11);
    let mut seen: Vec<String> = Vec::new();
    for output in [wait_output(first, &args), wait_output(second, &args)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        seen.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_string),
        );
    }
    seen.sort();
    produced.sort();
    assert_eq!(seen.len(), produced.len(), "duplicates or losses");
    assert_eq!(seen, produced);
}

/// A raw Kafka connection, for what no console tool does: opening and ending a transaction.
struct Wire {
    stream: TcpStream,
    correlation_id: i32,
}

impl Wire {
    fn connect(addr: &str) -> Wire {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .expect("read timeout");
        Wire {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends `request` in `version` and reads its answer.
    fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("console-test")));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, R::header_version(version))
            .expect("encode header");
        request.encode(&mut frame, version).expect("encode request");
        let size = i32::try_from(frame.len()).expect("small request");
        self.stream
            .write_all(&size.to_be_bytes())
            .and_then(|()| self.stream.write_all(&frame))
            .expect("send request");
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).expect("response size");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).expect("response");
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, self.correlation_id);
        R::Response::decode(&mut body, version).expect("response body")
    }
}

/// Calls `ask` until it answers no error code or one that is not retriable (the coordinator
/// is created and loaded on first use); returns the last code.
fn until_settled(mut ask: impl FnMut() -> i16) -> i16 {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        let code = ask();
        if code == 0 || !ErrorCode::from_code(code).is_retriable() || Instant::now() > deadline {
            return code;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens a transaction of `id` on `partitions` of `topic` (FindCoordinator, InitProducerId,
/// AddPartitionsToTxn, as a transactional producer's first send does); returns the
/// producer id and epoch.
fn open_transaction(wire: &mut Wire, id: &str, topic: &str, partitions: &[i32]) -> (i64, i16) {
    let key = StrBytes::from_string(id.to_string());
    let find = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![key.clone()]);
    let found = until_settled(|| wire.call(4, &find).coordinators[0].error_code);
    assert_eq!(found, 0, "FindCoordinator of {id}");
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(key.clone())))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let mut producer = (-1, -1);
    let code = until_settled(|| {
        let response = wire.call(4, &init);
        producer = (response.producer_id.0, response.producer_epoch);
        response.error_code
    });
    assert_eq!(code, 0, "InitProducerId of {id}");
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(key))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions.to_vec())]);
    let added = wire.call(3, &add);
    for result in added.results_by_topic_v3_and_below {
        for partition in result.results_by_partition {
            assert_eq!(partition.partition_error_code, 0, "AddPartitionsToTxn");
        }
    }
    producer
}

/// The rows under the header of a `brook transactions` table, split into cells.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let rows = text.lines().skip(1);
    rows.map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The header row of `brook transactions describe` (`kafka-transactions.sh describe`'s
/// columns; each value here is shorter than its column's name).
const DESCRIBE_HEADER: &str = concat!(
    "CoordinatorId  TransactionalId  ProducerId  ProducerEpoch  TransactionState  ",
    "TransactionTimeoutMs  CurrentTransactionStartTimeMs  TopicPartitions\n"
);

#[test]
fn console_transactions_list_and_describe_an_open_transaction() {
    let server = Server::start();
    let header = "TransactionalId  Coordinator  ProducerId  TransactionState\n";
    assert_eq!(server.ok(&["transactions", "list"], ""), header);
    let unknown = server.run(
        &["transactions", "describe", "--transactional-id", "nope"],
        "",
    );
    assert_error(
        &unknown,
        "transactional id nope: TRANSACTIONAL_ID_NOT_FOUND (105)",
    );
    assert_eq!(String::from_utf8_lossy(&unknown.stderr).lines().count(), 1);
    assert_error(
        &server.run(&["transactions", "list", "--state", "Open"], ""),
        "--state Open: not a transaction state",
    );

    server.ok(&["topics", "create", "orders", "--partitions", "2"], "");
    let mut wire = Wire::connect(&server.addr);
    let (producer_id, epoch) = open_transaction(&mut wire, "tx", "orders", &[1, 0]);
    let producer = producer_id.to_string();
    let list = |filters: &[&str]| {
        let args = [&["transactions", "list"], filters].concat();
        table_rows(&server.ok(&args, ""))
    };
    let none: Vec<Vec<String>> = Vec::new();
    let ongoing = vec![vec![
        "tx".to_string(),
        "1".to_string(),
        producer.clone(),
        "Ongoing".to_string(),
    ]];
    assert_eq!(list(&[]), ongoing);
    assert_eq!(
        list(&["--state", "Ongoing", "--producer-id", &producer]),
        ongoing
    );
    assert_eq!(
        list(&["--state", "Empty", "--state", "PrepareCommit"]),
        none
    );
    assert_eq!(
        list(&["--producer-id", &(producer_id + 1).to_string()]),
        none
    );
    assert_eq!(list(&["--duration-ms", "600000"]), none, "open < 10 min");

    let describe = || {
        let args = ["transactions", "describe", "--transactional-id", "tx"];
        let text = server.ok(&args, "");
        assert!(text.starts_with(DESCRIBE_HEADER), "{text}");
        let mut rows = table_rows(&text);
        assert_eq!(rows.len(), 1, "{text}");
        rows.remove(0)
    };
    let described = describe();
    let start_ms: i64 = described[6].parse().expect("a start time");
    assert!(start_ms > 0, "{described:?}");
    assert_eq!(
        described,
        [
            "1",
            "tx",
            &producer,
            &epoch.to_string(),
            "Ongoing",
            "60000",
            &start_ms.to_string(),
            "orders-0,orders-1",
        ]
    );

    let end = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_committed(false);
    assert_eq!(wire.call(3, &end).error_code, 0, "EndTxn abort");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let described = describe();
        if described[4] == "CompleteAbort" {
            assert_eq!(described[7], "-", "no partitions once it ended");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never CompleteAbort: {described:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(list(&["--state", "Ongoing"]), none);
}
