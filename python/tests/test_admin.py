"""Admin calls, and bad input answered with a BrookError that names the Kafka error."""

import time

import pytest

import brook


def test_create_list_describe_delete(admin, topic_name):
    admin.create_topic(topic_name, partitions=3, replication_factor=1, config={"retention.ms": "60000"})
    assert topic_name in admin.list_topics()
    description = admin.describe_topic(topic_name)
    assert description.name == topic_name
    assert not description.is_internal
    assert [p.partition for p in description.partitions] == [0, 1, 2]
    assert all(p.leader >= 0 and p.leader in p.replicas and p.isr for p in description.partitions)
    assert admin.describe_configs(topic_name)["retention.ms"] == "60000"
    admin.alter_configs(topic_name, {"retention.ms": 120000})
    assert admin.describe_configs(topic_name)["retention.ms"] == "120000"
    admin.create_partitions(topic_name, 5)
    assert len(admin.describe_topic(topic_name).partitions) == 5
    admin.delete_topic(topic_name)
    assert topic_name not in admin.list_topics()


def test_create_twice_is_topic_already_exists(admin, topic_name):
    admin.create_topic(topic_name, partitions=1)
    with pytest.raises(brook.BrookError) as info:
        admin.create_topic(topic_name, partitions=1)
    assert info.value.name == "TOPIC_ALREADY_EXISTS"
    assert info.value.code == 36
    assert not info.value.retriable
    assert "TOPIC_ALREADY_EXISTS" in str(info.value)


def test_bad_topic_config_value_is_a_config_error(admin, topic_name):
    with pytest.raises(brook.ConfigError) as info:
        admin.create_topic(topic_name, partitions=1, config={"retention.ms": "soon"})
    assert info.value.name == "INVALID_CONFIG"
    assert "retention.ms" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_topic(admin, topic_name):
    with pytest.raises(brook.BrookError) as info:
        admin.delete_topic(topic_name)
    assert info.value.name == "UNKNOWN_TOPIC_OR_PARTITION"


def test_bad_client_config(broker):
    with pytest.raises(brook.ConfigError) as info:
        brook.Producer(broker.bootstrap, compression="brotli")
    assert "compression.type" in str(info.value)
    with pytest.raises(brook.ConfigError):
        brook.Producer(broker.bootstrap, config={"no.such.property": 1})
    with pytest.raises(brook.ConfigError):
        brook.Producer(broker.bootstrap, acks="maybe")
    with pytest.raises(brook.ConfigError):
        brook.Producer(broker.bootstrap, acks=1, enable_idempotence=True)
    with pytest.raises(brook.ConfigError):
        brook.Consumer(broker.bootstrap, auto_offset_reset="sometime")
    with pytest.raises(brook.ConfigError):
        brook.Consumer(broker.bootstrap, topics=["t"])  # subscribing needs a group id
    with pytest.raises(TypeError):
        brook.Consumer(broker.bootstrap, group_id="g", topics="just-a-string")


def test_acks_one_turns_idempotence_off_and_config_dict_passes_through(broker, make_topic):
    topic = make_topic()
    with brook.Producer(broker.bootstrap, acks=1, config={"batch.size": 1024, "linger.ms": 0}) as producer:
        assert producer.send(topic, b"x").result(timeout=10).offset == 0
    with brook.Producer(broker.bootstrap, acks=0) as producer:
        assert producer.send(topic, b"y").result(timeout=10).offset == -1


def test_unreachable_broker_times_out():
    with brook.Producer("127.0.0.1:1", config={"max.block.ms": 500}) as producer:
        with pytest.raises(brook.KafkaTimeoutError) as info:
            producer.send("t", b"x")
        assert isinstance(info.value, TimeoutError)
        assert info.value.retriable


def test_errors_are_exceptions_with_kafka_names():
    assert issubclass(brook.ProducerFencedError, brook.BrookError)
    err = brook.ProducerFencedError("fenced", "PRODUCER_FENCED", 90, False)
    assert (err.name, err.code, err.retriable) == ("PRODUCER_FENCED", 90, False)
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert type(again) is brook.ProducerFencedError and again.code == 90


def test_group_admin_describe_alter_read_back_delete(broker, admin, make_topic):
    from conftest import group_name

    topic = make_topic(partitions=2)
    with brook.Producer(broker.bootstrap) as producer:
        for i in range(6):
            producer.send(topic, f"v{i}".encode(), partition=i % 2)
    group = group_name()
    consumer = brook.Consumer(
        broker.bootstrap,
        group_id=group,
        topics=[topic],
        auto_offset_reset="earliest",
        config={"client.id": "admin-test"},
    )
    try:
        deadline = time.monotonic() + 20
        while not consumer.assignment():
            assert time.monotonic() < deadline, "no assignment"
            consumer.poll(timeout=0.2)
        described = admin.describe_group(group)
        assert isinstance(described, brook.GroupDescription)
        assert (described.group_id, described.state) == (group, "Stable")
        assert (described.protocol_type, described.protocol) == ("consumer", "range")
        [member] = described.members
        assert isinstance(member, brook.MemberDescription)
        assert member.client_id == "admin-test"
        assert "127.0.0.1" in member.client_host
        assert member.instance_id is None
        assert sorted(member.assignment) == [brook.TopicPartition(topic, 0), brook.TopicPartition(topic, 1)]
        listed = {g.group_id: g for g in admin.list_groups()}
        assert all(isinstance(g, brook.GroupListing) for g in listed.values())
        assert (listed[group].state, listed[group].protocol_type) == ("Stable", "consumer")
        assert group not in {g.group_id for g in admin.list_groups(states=["Empty"])}
        # Offsets of a group with members are the members' business.
        with pytest.raises(brook.BrookError) as info:
            admin.alter_group_offsets(group, {(topic, 0): 1})
        assert info.value.name == "UNKNOWN_MEMBER_ID"
        with pytest.raises(brook.BrookError) as info:
            admin.delete_group(group)
        assert info.value.name == "NON_EMPTY_GROUP"
    finally:
        consumer.close()

    admin.alter_group_offsets(group, {brook.TopicPartition(topic, 0): 1, (topic, 1): 2})
    assert admin.list_group_offsets(group) == {
        brook.TopicPartition(topic, 0): 1,
        brook.TopicPartition(topic, 1): 2,
    }
    assert admin.list_group_offsets(group, [(topic, 1)]) == {brook.TopicPartition(topic, 1): 2}
    assert admin.describe_group(group).state == "Empty"
    admin.delete_group(group)
    with pytest.raises(brook.BrookError) as info:
        admin.describe_group(group)
    assert (info.value.name, info.value.code) == ("GROUP_ID_NOT_FOUND", 69)
    assert admin.list_group_offsets(group) == {}
