import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.common.utils.Utils;

/**
 * The Apache Kafka Java client (AdminClient, KafkaProducer, KafkaConsumer) against a broker.
 *
 * <p>Usage: {@code java BrookInterop HOST:PORT [RECORDS_PER_CODEC]}, or against a cluster
 * {@code java BrookInterop --cluster HOST:PORT BROKERS} (bootstrapped from one node: the
 * cluster, the metadata quorum, an RF 3 topic's leaders, produce and consume through the
 * leaders the client finds). Prints one line per step and exits 0 when every check passed,
 * 1 on the first failure (with its stack trace).
 * Consumers use assign() without a group.id and never commit.
 */
public final class BrookInterop {
    static final int PARTITIONS = 3;
    static final List<String> CODECS = List.of("none", "gzip", "snappy", "lz4", "zstd");
    static final Duration TIMEOUT = Duration.ofSeconds(30);

    final String bootstrap;
    final int recordsPerCodec;
    final String suffix = UUID.randomUUID().toString().substring(0, 8);

    BrookInterop(String bootstrap, int recordsPerCodec) {
        this.bootstrap = bootstrap;
        this.recordsPerCodec = recordsPerCodec;
    }

    /** One record as produced: where it went, and what it holds. */
    record Sent(int seq, byte[] key, byte[] value, List<Header> headers, long timestamp, long offset) {}

    public static void main(String[] args) {
        boolean cluster = args.length == 3 && args[0].equals("--cluster");
        if (!cluster && (args.length < 1 || args.length > 2)) {
            System.err.println("usage: BrookInterop HOST:PORT [RECORDS_PER_CODEC]");
            System.err.println("       BrookInterop --cluster HOST:PORT BROKERS");
            System.exit(2);
        }
        int records = args.length == 2 ? Integer.parseInt(args[1]) : 5000;
        int code = 0;
        try {
            if (cluster) {
                new BrookInterop(args[1], 2000).runCluster(Integer.parseInt(args[2]));
            } else {
                new BrookInterop(args[0], records).run();
            }
            System.out.println("PASS: every check passed");
        } catch (Throwable t) {
            System.out.println("FAIL: " + t);
            t.printStackTrace(System.out);
            code = 1;
        }
        System.out.flush();
        // Clients are closed by now; exit anyway in case one left a non-daemon thread behind.
        System.exit(code);
    }

    static void step(String line) {
        System.out.println("== " + line);
    }

    static void ok(String line) {
        System.out.println("   ok: " + line);
    }

    static void check(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    static void checkEq(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    String topicFor(String codec) {
        return "java-interop-" + codec + "-" + suffix;
    }

    void run() throws Exception {
        long started = System.nanoTime();
        System.out.println("kafka-clients " + AppInfoParser.getVersion() + " (" + AppInfoParser.getCommitId()
                + ") on Java " + System.getProperty("java.version") + ", bootstrap " + bootstrap);
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        adminProps.put(AdminClientConfig.CLIENT_ID_CONFIG, "brook-interop-admin");
        adminProps.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
        adminProps.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        try (Admin admin = Admin.create(adminProps)) {
            List<String> topics = CODECS.stream().map(this::topicFor).toList();
            createAndDescribe(admin, topics);
            for (String codec : CODECS) {
                String topic = topicFor(codec);
                Map<Integer, List<Sent>> sent = produce(codec, topic);
                consumeAndCheckOffsets(topic, sent);
            }
            describeConfigs(admin, topics.get(0));
            deleteTopics(admin, topics);
        }
        System.out.printf("   total %.1f s%n", (System.nanoTime() - started) / 1e9);
    }

    Properties adminProps() {
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        adminProps.put(AdminClientConfig.CLIENT_ID_CONFIG, "brook-interop-admin");
        adminProps.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
        adminProps.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        return adminProps;
    }

    /** Against a cluster of {@code brokers} nodes, bootstrapped from one of them. */
    void runCluster(int brokers) throws Exception {
        long started = System.nanoTime();
        System.out.println("kafka-clients " + AppInfoParser.getVersion() + " against a cluster, bootstrap "
                + bootstrap);
        try (Admin admin = Admin.create(adminProps())) {
            step("AdminClient describeCluster");
            DescribeClusterResult cluster = admin.describeCluster();
            var nodes = cluster.nodes().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            var controller = cluster.controller().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            checkEq(brokers, nodes.size(), "brokers listed");
            check(nodes.stream().anyMatch(n -> n.id() == controller.id()), "the controller is a broker");
            ok(nodes.size() + " brokers, controller " + controller.id());

            step("AdminClient describeMetadataQuorum");
            QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo()
                    .get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            checkEq(brokers, quorum.voters().size() + quorum.observers().size(),
                    "voters and observers (brokers that are not voters)");
            check(quorum.voters().stream().anyMatch(v -> v.replicaId() == quorum.leaderId()),
                    "the quorum leader is a voter");
            check(quorum.highWatermark() > 0, "the metadata log has committed entries");
            for (QuorumInfo.ReplicaState voter : quorum.voters()) {
                check(voter.logEndOffset() >= 0, "voter " + voter.replicaId() + " has a log end");
            }
            ok("leader " + quorum.leaderId() + " in epoch " + quorum.leaderEpoch() + ", high watermark "
                    + quorum.highWatermark() + ", " + quorum.voters().size() + " voters, "
                    + quorum.observers().size() + " observers");

            String topic = "java-cluster-" + suffix;
            step("AdminClient createTopics " + topic + " (" + PARTITIONS + " partitions, RF 3)");
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 3))).all()
                    .get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            TopicDescription description = null;
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (true) {
                description = admin.describeTopics(List.of(topic)).allTopicNames()
                        .get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS).get(topic);
                boolean inSync = description.partitions().stream().allMatch(p -> p.isr().size() == 3);
                if (inSync || System.nanoTime() > deadline) {
                    break;
                }
                Thread.sleep(100);
            }
            Set<Integer> leaders = new java.util.HashSet<>();
            for (TopicPartitionInfo p : description.partitions()) {
                check(p.leader() != null, "partition " + p.partition() + " has a leader");
                checkEq(3, p.replicas().size(), "replicas of partition " + p.partition());
                checkEq(3, p.isr().size(), "ISR of partition " + p.partition());
                leaders.add(p.leader().id());
            }
            checkEq(Math.min(PARTITIONS, brokers), leaders.size(), "distinct leaders");
            ok("leaders " + leaders);

            Map<Integer, List<Sent>> sent = produce("lz4", topic);
            consumeAndCheckOffsets(topic, sent);
            reassign(admin, topic, nodes.stream().map(n -> n.id()).toList(), description);
            deleteTopics(admin, List.of(topic));
        }
        System.out.printf("   total %.1f s%n", (System.nanoTime() - started) / 1e9);
    }

    /**
     * Moves partition 0 of {@code topic} (kafka-reassign-partitions' calls): onto a broker
     * it is not on, when there is one, else reversed; waits until listPartitionReassignments
     * shows nothing moving and describeTopics the target.
     */
    void reassign(Admin admin, String topic, List<Integer> brokers, TopicDescription before)
            throws Exception {
        List<Integer> replicas = before.partitions().get(0).replicas().stream().map(n -> n.id()).toList();
        List<Integer> target = new ArrayList<>(replicas);
        java.util.Collections.reverse(target);
        brokers.stream().filter(b -> !replicas.contains(b)).findFirst().ifPresent(b -> target.set(0, b));
        TopicPartition tp = new TopicPartition(topic, 0);
        step("AdminClient alterPartitionReassignments " + tp + " " + replicas + " -> " + target);
        admin.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(target))))
                .all().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        Map<TopicPartition, PartitionReassignment> moving;
        do {
            moving = admin.listPartitionReassignments().reassignments()
                    .get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            check(System.nanoTime() < deadline, "the move completes: " + moving);
            Thread.sleep(100);
        } while (!moving.isEmpty());
        List<Integer> now = admin.describeTopics(List.of(topic)).allTopicNames()
                .get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS).get(topic).partitions().get(0).replicas()
                .stream().map(n -> n.id()).toList();
        checkEq(target, now, "replicas after the move");
        ok("moved; listPartitionReassignments empty");
    }

    void createAndDescribe(Admin admin, List<String> topics) throws Exception {
        step("AdminClient createTopics " + topics + " (" + PARTITIONS + " partitions each)");
        List<NewTopic> newTopics = topics.stream().map(t -> new NewTopic(t, PARTITIONS, (short) 1)).toList();
        admin.createTopics(newTopics).all().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        ok("created");

        step("AdminClient listTopics");
        Set<String> names = admin.listTopics().names().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        for (String topic : topics) {
            check(names.contains(topic), "listTopics lacks " + topic + ": " + names);
        }
        ok(names.size() + " topics listed, ours among them");

        step("AdminClient describeTopics");
        Map<String, TopicDescription> descriptions =
                admin.describeTopics(topics).allTopicNames().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        for (String topic : topics) {
            TopicDescription d = descriptions.get(topic);
            check(d != null, "no description of " + topic);
            checkEq(topic, d.name(), "described name");
            check(!d.isInternal(), topic + " described as internal");
            check(d.topicId() != null && !d.topicId().toString().isEmpty(), topic + " has no topic id");
            checkEq(PARTITIONS, d.partitions().size(), topic + " partition count");
            for (int i = 0; i < PARTITIONS; i++) {
                TopicPartitionInfo p = d.partitions().get(i);
                checkEq(i, p.partition(), topic + " partition index");
                check(p.leader() != null && !p.leader().isEmpty(), topic + "-" + i + " has no leader");
                check(p.replicas().contains(p.leader()), topic + "-" + i + " leader not among replicas");
                check(p.isr().contains(p.leader()), topic + "-" + i + " leader not in ISR");
            }
        }
        TopicPartitionInfo p0 = descriptions.get(topics.get(0)).partitions().get(0);
        ok("each has " + PARTITIONS + " partitions; partition 0 led by broker " + p0.leader().id() + " at "
                + p0.leader().host() + ":" + p0.leader().port());
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String str(byte[] b) {
        return b == null ? "null" : new String(b, StandardCharsets.UTF_8);
    }

    /** Sends the codec's records; returns them by partition, in offset order. */
    Map<Integer, List<Sent>> produce(String codec, String topic) throws Exception {
        step("KafkaProducer compression.type=" + codec + ": " + recordsPerCodec + " keyed records with headers to "
                + topic);
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "brook-interop-producer-" + codec);
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        // Only time limits are set: acks, idempotence, batching, in-flight requests stay the defaults.
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) TIMEOUT.toMillis());
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());

        long base = System.currentTimeMillis() - 60_000;
        List<Sent> records = new ArrayList<>(recordsPerCodec);
        List<Future<RecordMetadata>> futures = new ArrayList<>(recordsPerCodec);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < recordsPerCodec; i++) {
                byte[] key = bytes("key-" + (i % 101));
                // Repetitive values so that every codec has something to compress.
                byte[] value = bytes(codec + " value " + i + " " + "brook ".repeat(i % 17));
                List<Header> headers = List.of(
                        new RecordHeader("seq", bytes(Integer.toString(i))),
                        new RecordHeader("codec", bytes(codec)),
                        new RecordHeader("empty", new byte[0]),
                        new RecordHeader("nothing", (byte[]) null));
                long ts = base + i;
                records.add(new Sent(i, key, value, headers, ts, -1));
                futures.add(producer.send(new ProducerRecord<>(topic, null, ts, key, value, headers)));
            }
            producer.flush();
        }

        Map<Integer, List<Sent>> byPartition = new HashMap<>();
        for (int i = 0; i < recordsPerCodec; i++) {
            RecordMetadata md = futures.get(i).get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            Sent s = records.get(i);
            int expectedPartition = Utils.toPositive(Utils.murmur2(s.key())) % PARTITIONS;
            checkEq(topic, md.topic(), "record " + i + " topic");
            checkEq(expectedPartition, md.partition(), "record " + i + " partition (murmur2 of its key)");
            check(md.hasOffset() && md.offset() >= 0, "record " + i + " has no offset: " + md);
            checkEq(s.timestamp(), md.timestamp(), "record " + i + " timestamp (CreateTime)");
            List<Sent> list = byPartition.computeIfAbsent(md.partition(), p -> new ArrayList<>());
            // Idempotent producer: records of one partition are written in send order, no gaps.
            checkEq((long) list.size(), md.offset(), "record " + i + " offset in partition " + md.partition());
            list.add(new Sent(s.seq(), s.key(), s.value(), s.headers(), s.timestamp(), md.offset()));
        }
        checkEq(PARTITIONS, byPartition.size(), "partitions that got records");
        ok("all " + recordsPerCodec + " acknowledged; per partition " + counts(byPartition));
        return byPartition;
    }

    static Map<Integer, Integer> counts(Map<Integer, List<Sent>> byPartition) {
        Map<Integer, Integer> counts = new LinkedHashMap<>();
        for (int p = 0; p < PARTITIONS; p++) {
            counts.put(p, byPartition.getOrDefault(p, List.of()).size());
        }
        return counts;
    }

    void consumeAndCheckOffsets(String topic, Map<Integer, List<Sent>> sent) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "brook-interop-consumer");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
        props.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);

        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < PARTITIONS; p++) {
            tps.add(new TopicPartition(topic, p));
        }
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            step("KafkaConsumer assign(" + tps + ") + seekToBeginning, read back");
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
            int total = 0;
            int expectedTotal = sent.values().stream().mapToInt(List::size).sum();
            long deadline = System.nanoTime() + TIMEOUT.toNanos();
            while (total < expectedTotal) {
                check(System.nanoTime() < deadline, "read " + total + " of " + expectedTotal + " records within "
                        + TIMEOUT.toSeconds() + " s");
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    got.computeIfAbsent(r.partition(), p -> new ArrayList<>()).add(r);
                    total++;
                }
            }
            // Nothing beyond what was produced.
            ConsumerRecords<byte[], byte[]> extra = consumer.poll(Duration.ofMillis(200));
            checkEq(0, extra.count(), "records after the last produced one");
            for (int p = 0; p < PARTITIONS; p++) {
                List<Sent> expected = sent.getOrDefault(p, List.of());
                List<ConsumerRecord<byte[], byte[]>> actual = got.getOrDefault(p, List.of());
                checkEq(expected.size(), actual.size(), "records read from partition " + p);
                for (int i = 0; i < expected.size(); i++) {
                    compare(expected.get(i), actual.get(i), topic + "-" + p + " #" + i);
                }
            }
            ok("read " + total + " records; keys, values, headers, timestamps and per-partition order match");

            step("KafkaConsumer beginningOffsets / endOffsets");
            Map<TopicPartition, Long> beginning = consumer.beginningOffsets(tps);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps);
            for (TopicPartition tp : tps) {
                checkEq(0L, beginning.get(tp), "beginning offset of " + tp);
                checkEq((long) sent.getOrDefault(tp.partition(), List.of()).size(), end.get(tp), "end offset of " + tp);
            }
            ok("beginning " + values(beginning, tps) + ", end " + values(end, tps));

            step("KafkaConsumer offsetsForTimes");
            checkOffsetsForTimes(consumer, tps, sent);
        }
    }

    static List<Long> values(Map<TopicPartition, Long> offsets, List<TopicPartition> tps) {
        return tps.stream().map(offsets::get).toList();
    }

    static void compare(Sent expected, ConsumerRecord<byte[], byte[]> actual, String where) {
        checkEq(expected.offset(), actual.offset(), where + " offset");
        check(Arrays.equals(expected.key(), actual.key()),
                where + " key: expected " + str(expected.key()) + ", got " + str(actual.key()));
        check(Arrays.equals(expected.value(), actual.value()),
                where + " value: expected " + str(expected.value()) + ", got " + str(actual.value()));
        checkEq(TimestampType.CREATE_TIME, actual.timestampType(), where + " timestamp type");
        checkEq(expected.timestamp(), actual.timestamp(), where + " timestamp");
        Header[] headers = actual.headers().toArray();
        checkEq(expected.headers().size(), headers.length, where + " header count");
        for (int h = 0; h < headers.length; h++) {
            Header e = expected.headers().get(h);
            checkEq(e.key(), headers[h].key(), where + " header " + h + " key");
            check(Arrays.equals(e.value(), headers[h].value()), where + " header " + e.key() + ": expected "
                    + str(e.value()) + ", got " + str(headers[h].value()));
        }
    }

    static void checkOffsetsForTimes(KafkaConsumer<byte[], byte[]> consumer, List<TopicPartition> tps,
            Map<Integer, List<Sent>> sent) {
        // For a few target times per partition: the earliest offset whose timestamp is >= the target.
        for (double fraction : new double[] {0.0, 0.37, 0.5, 0.99}) {
            Map<TopicPartition, Long> query = new HashMap<>();
            Map<TopicPartition, Sent> expected = new HashMap<>();
            for (TopicPartition tp : tps) {
                List<Sent> records = sent.get(tp.partition());
                Sent target = records.get((int) (fraction * (records.size() - 1)));
                // One millisecond past the previous record's time, so the target lies between records.
                long time = target.offset() == 0
                        ? target.timestamp()
                        : records.get((int) target.offset() - 1).timestamp() + 1;
                query.put(tp, time);
                expected.put(tp, target);
            }
            Map<TopicPartition, OffsetAndTimestamp> found = consumer.offsetsForTimes(query);
            for (TopicPartition tp : tps) {
                OffsetAndTimestamp oat = found.get(tp);
                check(oat != null, "offsetsForTimes(" + query.get(tp) + ") of " + tp + " found nothing");
                checkEq(expected.get(tp).offset(), oat.offset(), "offsetsForTimes(" + query.get(tp) + ") of " + tp);
                checkEq(expected.get(tp).timestamp(), oat.timestamp(), "timestamp of offsetsForTimes(" + query.get(tp)
                        + ") of " + tp);
            }
        }
        // Past the newest record: no offset.
        Map<TopicPartition, Long> future = new HashMap<>();
        for (TopicPartition tp : tps) {
            List<Sent> records = sent.get(tp.partition());
            future.put(tp, records.get(records.size() - 1).timestamp() + 1);
        }
        Map<TopicPartition, OffsetAndTimestamp> none = consumer.offsetsForTimes(future);
        for (TopicPartition tp : tps) {
            check(none.get(tp) == null, "offsetsForTimes past the last record of " + tp + " gave " + none.get(tp));
        }
        ok("4 target times per partition give the first offset at or after them; past the end gives none");
    }

    void describeConfigs(Admin admin, String topic) throws Exception {
        step("AdminClient describeConfigs " + topic);
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Map<ConfigResource, Config> configs =
                admin.describeConfigs(List.of(resource)).all().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        Config config = configs.get(resource);
        check(config != null, "no configs for " + topic);
        Collection<ConfigEntry> entries = config.entries();
        check(!entries.isEmpty(), "no config entries for " + topic);
        for (String name : List.of("cleanup.policy", "retention.ms")) {
            ConfigEntry e = config.get(name);
            check(e != null, topic + " has no " + name + " entry");
            check(e.value() != null, name + " has no value");
        }
        ok(entries.size() + " entries, e.g. cleanup.policy=" + config.get("cleanup.policy").value() + ", retention.ms="
                + config.get("retention.ms").value());
    }

    void deleteTopics(Admin admin, List<String> topics) throws Exception {
        step("AdminClient deleteTopics " + topics);
        admin.deleteTopics(topics).all().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (true) {
            Set<String> names = admin.listTopics().names().get(TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            List<String> left = topics.stream().filter(names::contains).toList();
            if (left.isEmpty()) {
                break;
            }
            check(System.nanoTime() < deadline, "still listed after deleteTopics: " + left);
            Thread.sleep(100);
        }
        ok("deleted; listTopics no longer shows them");
    }
}
