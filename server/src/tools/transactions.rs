//! `brook transactions`: list the transactional ids the cluster's coordinators hold, and
//! describe one (like `kafka-transactions.sh list` and `describe`).
//!
//! Both print a table with `kafka-transactions.sh`'s column names; an absent value (no
//! start time, no partitions) is "-". `list` asks every broker and names the one that
//! coordinates each id; `describe` asks the id's coordinator, and an unknown id is an error.

use brook_client::{blocking, ListTransactionsFilter, TransactionDescription, TransactionState};
use clap::{Args, Subcommand};

use super::groups::{header, or_dash, table};
use super::{ConnectArgs, ToolError};

/// Flags of `brook transactions`.
#[derive(Args, Debug)]
pub struct TransactionsArgs {
    /// Where the broker is.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: TransactionsCommand,
}

/// The `brook transactions` subcommands.
#[derive(Subcommand, Debug)]
pub enum TransactionsCommand {
    /// List transactional ids: coordinator, producer id and state.
    List(ListArgs),
    /// Show a transactional id's producer, state, timeout, start time and partitions.
    Describe {
        /// The transactional id.
        #[arg(long, value_name = "ID")]
        transactional_id: String,
    },
}

/// Flags of `brook transactions list`; an id must pass every filter given.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only ids in this state (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
    /// CompleteAbort, Dead, PrepareEpochFence); repeat for several.
    #[arg(long = "state", value_name = "STATE")]
    pub states: Vec<String>,
    /// Only ids of this producer id; repeat for several.
    #[arg(long = "producer-id", value_name = "N")]
    pub producer_ids: Vec<i64>,
    /// Only transactions open for longer than this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub duration_ms: Option<i64>,
}

/// Runs `brook transactions …`, printing results on stdout.
pub fn run(args: TransactionsArgs) -> Result<(), ToolError> {
    let text = match args.command {
        TransactionsCommand::List(list) => {
            let filter = list_filter(&list)?;
            let admin = super::admin(&args.connect.bootstrap)?;
            list_transactions(&admin, filter)?
        }
        TransactionsCommand::Describe { transactional_id } => {
            let admin = super::admin(&args.connect.bootstrap)?;
            describe_transaction(&admin, &transactional_id)?
        }
    };
    super::print(&text)
}

/// The client's filter from the flags; a state Kafka does not name is refused here, since
/// a broker would only answer it back as unknown and list nothing.
fn list_filter(args: &ListArgs) -> Result<ListTransactionsFilter, ToolError> {
    let mut states = Vec::with_capacity(args.states.len());
    for name in &args.states {
        let state = TransactionState::parse(name);
        if let TransactionState::Other(_) = state {
            let known: Vec<&str> = TransactionState::KNOWN.iter().map(|s| s.as_str()).collect();
            return Err(ToolError::Usage(format!(
                "--state {name}: not a transaction state (one of {})",
                known.join(", ")
            )));
        }
        states.push(state);
    }
    if let Some(duration_ms) = args.duration_ms.filter(|&ms| ms < 0) {
        return Err(ToolError::Usage(format!(
            "--duration-ms {duration_ms}: must be at least 0"
        )));
    }
    Ok(ListTransactionsFilter {
        states,
        producer_ids: args.producer_ids.clone(),
        duration_ms: args.duration_ms,
    })
}

fn list_transactions(
    admin: &blocking::Admin,
    filter: ListTransactionsFilter,
) -> Result<String, ToolError> {
    let mut rows = vec![header(&[
        "TransactionalId",
        "Coordinator",
        "ProducerId",
        "TransactionState",
    ])];
    for listing in admin.list_transactions(filter)? {
        rows.push(vec![
            listing.transactional_id,
            listing.coordinator.to_string(),
            listing.producer_id.to_string(),
            listing.state.to_string(),
        ]);
    }
    Ok(table(&rows))
}

fn describe_transaction(admin: &blocking::Admin, id: &str) -> Result<String, ToolError> {
    let mut described = admin
        .describe_transactions(&[id])
        .map_err(|err| ToolError::about(format!("transactional id {id}"), err))?;
    let description = described
        .pop()
        .expect("describe_transactions answers each id asked");
    Ok(format_description(&description))
}

/// A header row and one row of values, `kafka-transactions.sh describe`'s columns.
fn format_description(described: &TransactionDescription) -> String {
    let partitions: Vec<String> = described
        .partitions
        .iter()
        .map(|tp| tp.to_string())
        .collect();
    let rows = vec![
        header(&[
            "CoordinatorId",
            "TransactionalId",
            "ProducerId",
            "ProducerEpoch",
            "TransactionState",
            "TransactionTimeoutMs",
            "CurrentTransactionStartTimeMs",
            "TopicPartitions",
        ]),
        vec![
            described.coordinator.to_string(),
            described.transactional_id.clone(),
            described.producer_id.to_string(),
            described.producer_epoch.to_string(),
            described.state.to_string(),
            described.timeout_ms.to_string(),
            described
                .start_time_ms
                .map_or("-".to_string(), |ms| ms.to_string()),
            or_dash(&partitions.join(",")),
        ],
    ];
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use brook_client::TopicPartition;

    fn list_args(states: &[&str], duration_ms: Option<i64>) -> ListArgs {
        ListArgs {
            states: states.iter().map(|s| s.to_string()).collect(),
            producer_ids: vec![3],
            duration_ms,
        }
    }

    #[test]
    fn transactions_list_filter_refuses_unknown_states_and_negative_durations() {
        let filter = list_filter(&list_args(&["Ongoing", "PrepareCommit"], Some(0))).unwrap();
        assert_eq!(
            filter.states,
            [TransactionState::Ongoing, TransactionState::PrepareCommit]
        );
        assert_eq!(
            (filter.producer_ids, filter.duration_ms),
            (vec![3], Some(0))
        );
        let unknown = list_filter(&list_args(&["ongoing"], None)).unwrap_err();
        assert!(
            unknown
                .to_string()
                .starts_with("--state ongoing: not a transaction state (one of Empty, Ongoing,"),
            "{unknown}"
        );
        let negative = list_filter(&list_args(&[], Some(-1))).unwrap_err();
        assert_eq!(negative.to_string(), "--duration-ms -1: must be at least 0");
    }

    #[test]
    fn transactions_describe_prints_kafka_columns() {
        let mut described = TransactionDescription {
            transactional_id: "tx".to_string(),
            state: TransactionState::Ongoing,
            producer_id: 4,
            producer_epoch: 0,
            timeout_ms: 60_000,
            start_time_ms: Some(1_700_000_000_000),
            partitions: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)],
            coordinator: 1,
        };
        let text = format_description(&described);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0][0], "CoordinatorId");
        assert_eq!(lines[0][7], "TopicPartitions");
        assert_eq!(
            lines[1],
            [
                "1",
                "tx",
                "4",
                "0",
                "Ongoing",
                "60000",
                "1700000000000",
                "t-0,t-1"
            ]
        );
        described.state = TransactionState::Empty;
        described.start_time_ms = None;
        described.partitions.clear();
        let text = format_description(&described);
        let values: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(values, ["1", "tx", "4", "0", "Empty", "60000", "-", "-"]);
    }
}
