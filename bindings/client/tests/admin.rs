//! The admin client against a real `brook server`: topics and configs round trip, and the
//! transaction calls on a broker that has seen no transactional producer.

mod common;

use brook_client::{
    Admin, AdminConfig, ConfigOp, ErrorCode, ListTransactionsFilter, NewTopic, TransactionState,
};
use common::Server;

fn config_value(entries: &[brook_client::ConfigEntry], name: &str) -> (Option<String>, bool) {
    let entry = entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} is described"));
    (entry.value.clone(), entry.is_default)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_round_trip() {
    let server = Server::start();
    let admin = Admin::new(AdminConfig::new(&server.addr)).expect("admin");

    let topic = NewTopic::new("orders", 2, 1).config("retention.ms", "60000");
    admin
        .create_topics(std::slice::from_ref(&topic))
        .await
        .expect("create");
    let again = admin.create_topics(&[topic]).await.expect_err("exists");
    assert_eq!(again.code(), ErrorCode::TopicAlreadyExists);
    assert!(!again.is_retriable());
    let bad = NewTopic::new("bad", 0, 1);
    let refused = admin.create_topics(&[bad]).await.expect_err("0 partitions");
    assert_eq!(refused.code(), ErrorCode::InvalidPartitions);

    assert!(admin
        .list_topics()
        .await
        .expect("list")
        .contains(&"orders".to_string()));
    let described = admin.describe_topic("orders").await.expect("describe");
    assert_eq!(described.name, "orders");
    assert_eq!(described.partitions.len(), 2);
    for (index, partition) in described.partitions.iter().enumerate() {
        assert_eq!(partition.partition, index as i32);
        assert!(partition.leader >= 0, "partition {index} has a leader");
        assert_eq!(partition.replicas, vec![partition.leader]);
    }

    let configs = admin.describe_configs("orders").await.expect("configs");
    assert_eq!(
        config_value(&configs, "retention.ms"),
        (Some("60000".into()), false)
    );
    let changes = [
        ("retention.ms", ConfigOp::Set("120000".into())),
        ("cleanup.policy", ConfigOp::Set("compact".into())),
    ];
    admin
        .alter_configs("orders", &changes)
        .await
        .expect("alter");
    let configs = admin.describe_configs("orders").await.expect("configs");
    assert_eq!(
        config_value(&configs, "retention.ms").0.as_deref(),
        Some("120000")
    );
    assert_eq!(
        config_value(&configs, "cleanup.policy").0.as_deref(),
        Some("compact")
    );
    admin
        .alter_configs("orders", &[("cleanup.policy", ConfigOp::Delete)])
        .await
        .expect("delete override");
    let configs = admin.describe_configs("orders").await.expect("configs");
    assert_eq!(
        config_value(&configs, "cleanup.policy"),
        (Some("delete".into()), true)
    );
    assert_eq!(
        config_value(&configs, "retention.ms").0.as_deref(),
        Some("120000"),
        "untouched"
    );

    admin.create_partitions("orders", 5).await.expect("grow");
    assert_eq!(
        admin
            .describe_topic("orders")
            .await
            .expect("describe")
            .partitions
            .len(),
        5
    );
    let shrink = admin
        .create_partitions("orders", 3)
        .await
        .expect_err("cannot shrink");
    assert_eq!(shrink.code(), ErrorCode::InvalidPartitions);

    admin.delete_topics(&["orders"]).await.expect("delete");
    assert!(!admin
        .list_topics()
        .await
        .expect("list")
        .contains(&"orders".to_string()));
    let gone = admin
        .delete_topics(&["orders"])
        .await
        .expect_err("already deleted");
    assert_eq!(gone.code(), ErrorCode::UnknownTopicOrPartition);
    let missing = admin.describe_topic("orders").await.expect_err("deleted");
    assert_eq!(missing.code(), ErrorCode::UnknownTopicOrPartition);
}

/// The Rust client has no transactional producer yet, so only a broker without transactions:
/// nothing is listed, and an unknown id is TRANSACTIONAL_ID_NOT_FOUND once the coordinator
/// (created by the look-up, `__transaction_state`) answers.
#[tokio::test(flavor = "multi_thread")]
async fn admin_transactions_on_a_broker_without_any() {
    let server = Server::start();
    let admin = Admin::new(AdminConfig::new(&server.addr)).expect("admin");
    let all = admin
        .list_transactions(ListTransactionsFilter::default())
        .await
        .expect("list");
    assert_eq!(all, []);
    let unknown = admin
        .describe_transactions(&["nope"])
        .await
        .expect_err("unknown id");
    assert_eq!(
        unknown.code(),
        ErrorCode::TransactionalIdNotFound,
        "{unknown}"
    );
    let filter = ListTransactionsFilter {
        states: vec![TransactionState::Ongoing],
        producer_ids: vec![1],
        duration_ms: Some(0),
    };
    assert_eq!(admin.list_transactions(filter).await.expect("list"), []);
}
