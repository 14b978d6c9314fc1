//! A simulated cluster node process: the core `ClusterNode` (quorum voter, controller when it
//! leads, member broker) over a [`SimDisk`], serving Kafka clients on a madsim TCP listener
//! and talking to the other nodes with madsim datagrams (which the network may delay, drop
//! or cut off).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use brook_core::broker::{BrokerConfig, ParkedId, Reply, RequestContext};
use brook_core::node::{ClusterNode, Completed, NodeConfig};
use brook_core::protocol::encode_response_for;
use brook_core::NodeId;
use bytes::BytesMut;
use madsim::net::{Endpoint, TcpListener, TcpStream};
use madsim::rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use crate::broker_node::{next_request, now, BROKER_PORT};
use crate::disk::SimDisk;
use crate::trace::Trace;

/// The port nodes exchange peer messages on.
pub const PEER_PORT: u16 = 9093;
/// The datagram tag of peer messages.
const PEER_TAG: u64 = 7;

/// Node `id`'s address (`10.0.0.{id}`).
pub fn node_ip(id: i32) -> String {
    format!("10.0.0.{id}")
}

/// The running nodes, for the checkers to inspect replicas once the run is over.
pub type Registry = Arc<Mutex<BTreeMap<i32, SharedNode>>>;

/// A node behind the lock its tasks share.
#[derive(Clone)]
pub struct SharedNode(Arc<Mutex<NodeState>>);

/// A node and the client connections waiting on its parked requests.
pub struct NodeState {
    /// The node.
    pub node: ClusterNode<SimDisk>,
    waiters: HashMap<ParkedId, oneshot::Sender<Vec<u8>>>,
    /// (api, version, correlation id) of each parked request, to encode its answer.
    parked: HashMap<ParkedId, (kafka_protocol::messages::ApiKey, i16, i32)>,
    failed: bool,
    /// The workload topic's partition states (leader, epoch, ISR) as this node last traced
    /// them.
    seen: Vec<(Option<i32>, i32, Vec<i32>)>,
    id: i32,
    trace: Trace,
}

impl SharedNode {
    /// Locks the node.
    pub fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.0.lock().expect("node lock")
    }
}

impl NodeState {
    /// Answers the client requests the node completed; returns the peer messages to send.
    fn flush(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        self.trace_changes();
        for completed in self.node.poll_completed() {
            let (id, bytes) = match completed {
                Completed::Fetch(id, data) => {
                    let Some((_, version, correlation)) = self.parked.remove(&id) else {
                        continue;
                    };
                    let bytes =
                        self.node
                            .broker()
                            .fetch_response_bytes(version, correlation, &data);
                    (id, bytes.unwrap_or_default())
                }
                Completed::Response(id, response) => {
                    let Some((api, version, correlation)) = self.parked.remove(&id) else {
                        continue;
                    };
                    let bytes = encode_response_for(api, version, correlation, &response);
                    (id, bytes.map(|b| b.to_vec()).unwrap_or_default())
                }
            };
            if let Some(waiter) = self.waiters.remove(&id) {
                let _ = waiter.send(bytes);
            }
        }
        self.node.poll_outgoing()
    }

    /// Records in the trace each change of the workload topic's partitions in this node's
    /// image (leader, leader epoch, ISR).
    fn trace_changes(&mut self) {
        let Some(topic) = self.node.image().topic(crate::workload::TOPIC) else {
            return;
        };
        let unchanged = topic.partitions.len() == self.seen.len()
            && topic.partitions.iter().zip(&self.seen).all(|(p, seen)| {
                p.leader.map(|n| n.0) == seen.0
                    && p.leader_epoch.0 == seen.1
                    && p.isr.iter().map(|n| n.0).eq(seen.2.iter().copied())
            });
        if unchanged {
            return;
        }
        let states: Vec<(Option<i32>, i32, Vec<i32>)> = topic
            .partitions
            .iter()
            .map(|p| {
                let isr = p.isr.iter().map(|n| n.0).collect();
                (p.leader.map(|n| n.0), p.leader_epoch.0, isr)
            })
            .collect();
        for (i, state) in states.iter().enumerate() {
            if self.seen.get(i) != Some(state) {
                let (leader, epoch, isr) = state;
                self.trace.record(format!(
                    "{} node{}: p{i} leader {leader:?} epoch {epoch} isr {isr:?}",
                    now().0,
                    self.id
                ));
            }
        }
        self.seen = states;
    }
}

/// Milliseconds each disk-bound step of a node takes while its disk is slow (0: normal).
pub type DiskStall = Arc<std::sync::atomic::AtomicU64>;

/// Waits out the node's disk stall, if any: its storage calls are synchronous inside the
/// core, so a slow disk shows as the node taking that long to act on a request or message.
async fn stall(disk_stall: &DiskStall) {
    let ms = disk_stall.load(std::sync::atomic::Ordering::Relaxed);
    if ms > 0 {
        madsim::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// What the fault plan does to one node's machine, shared with its incarnations.
#[derive(Clone, Default)]
pub struct MachineFaults {
    /// Set when the machine lost power (the boot id changed): the next start reports it.
    pub rebooted: Arc<std::sync::atomic::AtomicBool>,
    /// How long each step takes while the disk has a latency spike.
    pub disk_stall: DiskStall,
    /// Of a thousand messages to other nodes, how many are lost.
    pub loss_per_mille: u32,
}

/// Runs one incarnation of node `id` until it is killed, under `machine`'s faults.
pub async fn run_node(
    id: i32,
    voters: Vec<NodeId>,
    disk: SimDisk,
    machine: MachineFaults,
    trace: Trace,
    registry: Registry,
) {
    let MachineFaults {
        rebooted,
        disk_stall,
        loss_per_mille,
    } = machine;
    let mut rng = madsim::rand::thread_rng();
    let incarnation: u64 = rng.gen();
    let broker = BrokerConfig {
        node_id: id,
        advertised_host: node_ip(id),
        advertised_port: i32::from(BROKER_PORT),
        default_replication_factor: voters.len() as i16,
        ..BrokerConfig::default()
    };
    let mut config = NodeConfig::new(broker, voters, incarnation);
    // Datagrams may be lost here: a follower fetch or controller request unanswered for a
    // second is sent again (twice the longest fetch wait).
    config.request_timeout_ms = 1_000;
    config.lost_unsynced = rebooted.swap(false, std::sync::atomic::Ordering::SeqCst);
    // Election jitter from the seed: raft-rs's own draw escapes madsim.
    config.election_tick = 10 + rng.gen_range(0..10);
    let node = match ClusterNode::open(disk, config, now()) {
        Ok(node) => node,
        Err(err) => {
            trace.record(format!("{} node{id}: cannot open: {err}", now().0));
            return;
        }
    };
    trace.record(format!("{} node{id}: open", now().0));
    let shared = SharedNode(Arc::new(Mutex::new(NodeState {
        node,
        waiters: HashMap::new(),
        parked: HashMap::new(),
        failed: false,
        seen: Vec::new(),
        id,
        trace: trace.clone(),
    })));
    registry
        .lock()
        .expect("registry")
        .insert(id, shared.clone());
    let endpoint = Arc::new(
        Endpoint::bind(("0.0.0.0", PEER_PORT))
            .await
            .expect("bind peer port"),
    );
    // Peer messages in.
    {
        let (shared, endpoint, trace) = (shared.clone(), endpoint.clone(), trace.clone());
        let disk_stall = disk_stall.clone();
        madsim::task::spawn(async move {
            loop {
                let Ok((payload, from)) = endpoint.recv_from_raw(PEER_TAG).await else {
                    continue;
                };
                stall(&disk_stall).await;
                let Ok(bytes) = payload.downcast::<Vec<u8>>() else {
                    continue;
                };
                let Some(from) = node_of(from) else { continue };
                let outgoing = {
                    let mut state = shared.lock();
                    if state.failed {
                        continue;
                    }
                    if let Err(err) = state.node.handle_peer_message(now(), from, &bytes) {
                        trace.record(format!("{} node{id}: stopped: {err}", now().0));
                        state.failed = true;
                    }
                    state.flush()
                };
                send_all(&endpoint, outgoing, loss_per_mille).await;
            }
        });
    }
    // Timers.
    {
        let (shared, endpoint, trace) = (shared.clone(), endpoint.clone(), trace.clone());
        madsim::task::spawn(async move {
            loop {
                let wait = {
                    let state = shared.lock();
                    (state.node.next_deadline().0 - now().0).clamp(1, 100)
                };
                madsim::time::sleep(Duration::from_millis(wait as u64)).await;
                let outgoing = {
                    let mut state = shared.lock();
                    if state.failed {
                        continue;
                    }
                    if let Err(err) = state.node.handle_tick(now()) {
                        trace.record(format!("{} node{id}: stopped: {err}", now().0));
                        state.failed = true;
                    }
                    state.flush()
                };
                send_all(&endpoint, outgoing, loss_per_mille).await;
            }
        });
    }
    let listener = TcpListener::bind(("0.0.0.0", BROKER_PORT))
        .await
        .expect("bind broker port");
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let (shared, endpoint, disk_stall) = (shared.clone(), endpoint.clone(), disk_stall.clone());
        madsim::task::spawn(async move {
            let _ = serve_client(stream, shared, endpoint, disk_stall, loss_per_mille).await;
        });
    }
}

/// The node a peer address belongs to.
fn node_of(addr: SocketAddr) -> Option<NodeId> {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.octets()[..3] == [10, 0, 0] => {
            Some(NodeId(i32::from(ip.octets()[3])))
        }
        _ => None,
    }
}

/// Sends the peer messages; each is lost with probability `loss_per_mille` / 1000 (datagram
/// loss: the protocols above retry what matters).
async fn send_all(endpoint: &Endpoint, outgoing: Vec<(NodeId, Vec<u8>)>, loss_per_mille: u32) {
    for (to, bytes) in outgoing {
        if loss_per_mille > 0 && madsim::rand::thread_rng().gen_range(0..1000) < loss_per_mille {
            continue;
        }
        let last = u8::try_from(to.0).unwrap_or(0);
        let ip = std::net::Ipv4Addr::new(10, 0, 0, last);
        let addr = SocketAddr::new(std::net::IpAddr::V4(ip), PEER_PORT);
        // A datagram to a node that is down is lost, as on a real network.
        let _ = endpoint.send_to_raw(addr, PEER_TAG, Box::new(bytes)).await;
    }
}

async fn serve_client(
    mut stream: TcpStream,
    shared: SharedNode,
    endpoint: Arc<Endpoint>,
    disk_stall: DiskStall,
    loss_per_mille: u32,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let Some(request) = next_request(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        stall(&disk_stall).await;
        let (api, version, correlation) =
            (request.api_key, request.api_version, request.correlation_id);
        let (answer, outgoing) = {
            let mut state = shared.lock();
            if state.failed || !state.node.is_serving() {
                // Not caught up with the metadata log yet: the client tries another node.
                return Ok(());
            }
            let reply = match state
                .node
                .handle_request(now(), &RequestContext::default(), request)
            {
                Ok(reply) => reply,
                Err(_) => {
                    state.failed = true;
                    return Ok(());
                }
            };
            let answer = match reply {
                Reply::Response(response) => {
                    let bytes = encode_response_for(api, version, correlation, &response);
                    Ok(bytes.map(|b| b.to_vec()).unwrap_or_default())
                }
                Reply::Fetch(data) => Ok(state
                    .node
                    .broker()
                    .fetch_response_bytes(version, correlation, &data)
                    .unwrap_or_default()),
                Reply::Parked(id) => {
                    let (sender, receiver) = oneshot::channel();
                    state.waiters.insert(id, sender);
                    state.parked.insert(id, (api, version, correlation));
                    Err(receiver)
                }
                Reply::None => Ok(Vec::new()),
            };
            (answer, state.flush())
        };
        send_all(&endpoint, outgoing, loss_per_mille).await;
        let bytes = match answer {
            Ok(bytes) if bytes.is_empty() => continue,
            Ok(bytes) => bytes,
            Err(receiver) => match receiver.await {
                Ok(bytes) if !bytes.is_empty() => bytes,
                _ => return Ok(()),
            },
        };
        stream.write_all(&bytes).await?;
        stream.flush().await?;
    }
}
