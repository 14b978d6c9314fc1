//! The madsim shell around core's [`Driver`]: a TCP listener for clients, madsim datagrams
//! between nodes, a timer task that sleeps until the driver's next deadline. It only moves
//! bytes — request dispatch, parked requests and response encoding are the driver's, the very
//! code `brook server` runs. Record bytes are read out of the simulated disk
//! ([`Driver::read_parts`]) where the server uses `sendfile`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use brook_core::broker::{BrokerConfig, RequestContext};
use brook_core::driver::{ConnectionId, Driver, Effect, Machine};
use brook_core::node::{ClusterNode, NodeConfig, PeerMessage};
use brook_core::protocol::frame_len;
use brook_core::{Millis, NodeId};
use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use madsim::net::{Endpoint, TcpListener, TcpStream};
use madsim::rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::disk::SimDisk;
use crate::trace::Trace;

/// The port every simulated node serves clients on.
pub const BROKER_PORT: u16 = 9092;
/// The port nodes exchange peer messages on.
pub const PEER_PORT: u16 = 9093;
/// The datagram tag of peer messages.
const PEER_TAG: u64 = 7;
/// The largest request frame a simulated node accepts.
const REQUEST_BYTES_MAX: usize = 16 << 20;

/// The simulated wall clock, in the broker's units.
pub fn now() -> Millis {
    let time = madsim::time::TimeHandle::current().now_time();
    Millis(
        time.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64,
    )
}

/// Node `id`'s address (`10.0.0.{id}`).
pub fn node_ip(id: i32) -> String {
    format!("10.0.0.{id}")
}

/// Milliseconds each disk-bound step of a node takes while its disk is slow (0: normal).
pub type DiskStall = Arc<AtomicU64>;

/// What the fault plan does to one node's machine, shared with its incarnations.
#[derive(Clone, Default)]
pub struct MachineFaults {
    /// Set when the machine lost power (the boot id changed): the next start reports it.
    pub rebooted: Arc<AtomicBool>,
    /// How long each step takes while the disk has a latency spike.
    pub disk_stall: DiskStall,
    /// Of a thousand messages to other nodes, how many are lost.
    pub loss_per_mille: u32,
    /// Of a thousand Produce responses, how many are lost with their connection after the
    /// request was handled (a reset at the worst moment), so clients retry what was written.
    pub produce_responses_lost_per_mille: u32,
    /// Set while the node's replica fetcher is stuck: its follower fetches never leave it,
    /// while everything else (raft, heartbeats, clients) goes on, so its leaders drop it from
    /// the ISR and a restarted node stays behind.
    pub fetcher_stalled: Arc<AtomicBool>,
}

/// What a connection task is handed for its request.
enum Answer {
    /// The response bytes (empty for acks=0) and the request's API.
    Respond(ApiKey, Vec<u8>),
    /// Close the connection.
    Close,
}

/// Called after every step with the machine, for the run's trace.
pub type Observer<M> = Box<dyn FnMut(&M) + Send>;

/// A node's controlled shutdown, as the simulator drives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shutdown {
    /// Not asked for.
    None,
    /// Asked for; the timer task starts it at its next wake-up.
    Asked,
    /// Started in the driver.
    Begun,
}

/// A node's driver and the connections waiting for answers.
pub struct NodeState<M: Machine> {
    driver: Driver<M>,
    connections: HashMap<ConnectionId, mpsc::UnboundedSender<Answer>>,
    next_connection: u64,
    observer: Observer<M>,
    id: i32,
    trace: Trace,
    /// Where [`SharedNode::report_peer_down`] sends (set while the node has peers).
    peer_down: Option<mpsc::UnboundedSender<NodeId>>,
    /// When the timer task will next wake.
    armed_at: Millis,
    /// Where a controlled shutdown ([`SharedNode::begin_shutdown`]) stands.
    shutdown: Shutdown,
}

impl<M: Machine> NodeState<M> {
    /// The node's state machine.
    pub fn node(&self) -> &M {
        self.driver.machine()
    }

    /// Carries out the driver's effects: answers to their connections now, peer messages
    /// returned for sending.
    fn dispatch(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        (self.observer)(self.driver.machine());
        let mut peers = Vec::new();
        for effect in self.driver.poll_effects() {
            let (connection, answer) = match effect {
                Effect::Respond {
                    connection,
                    api,
                    parts,
                } => match self.driver.read_parts(&parts) {
                    Ok(bytes) => (connection, Answer::Respond(api, bytes)),
                    Err(_) => (connection, Answer::Close),
                },
                Effect::Close { connection, .. } => (connection, Answer::Close),
                Effect::Peer { to, bytes } => {
                    peers.push((to, bytes));
                    continue;
                }
            };
            if let Some(sender) = self.connections.get(&connection) {
                let _ = sender.send(answer);
            }
        }
        peers
    }

    /// Records the driver's failure once.
    fn failed(&self, err: impl std::fmt::Display) {
        self.trace
            .record(format!("{} node{}: stopped: {err}", now().0, self.id));
    }
}

/// A node behind the lock its tasks share.
pub struct SharedNode<M: Machine>(Arc<Mutex<NodeState<M>>>, Arc<Notify>);

impl<M: Machine> Clone for SharedNode<M> {
    fn clone(&self) -> Self {
        SharedNode(self.0.clone(), self.1.clone())
    }
}

impl<M: Machine> SharedNode<M> {
    /// Locks the node.
    pub fn lock(&self) -> MutexGuard<'_, NodeState<M>> {
        self.0.lock().expect("node lock")
    }

    /// Tells the node that its connections to `peer` broke: the process on the other end
    /// died (on a real network the kernel closes its sockets; `server::peer` reports that).
    pub fn report_peer_down(&self, peer: NodeId) {
        if let Some(sender) = &self.lock().peer_down {
            let _ = sender.send(peer);
        }
    }

    /// Begins a controlled shutdown (as SIGTERM does to `brook server`): the timer task
    /// starts it at once and sends what it produces.
    pub fn begin_shutdown(&self) {
        self.lock().shutdown = Shutdown::Asked;
        self.1.notify_one();
    }

    /// Whether the controlled shutdown handed over what it can.
    pub fn shutdown_complete(&self) -> bool {
        let state = self.lock();
        state.shutdown == Shutdown::Begun && state.driver.shutdown_complete()
    }

    /// Wakes the timer task when an input brought the next deadline before its wake-up
    /// (each wake-up is a simulated timer: waking for nothing slows the simulation).
    fn rearm(&self) {
        let sooner = {
            let state = self.lock();
            state.driver.next_deadline() < state.armed_at
        };
        if sooner {
            self.1.notify_one();
        }
    }
}

/// Waits out the node's disk stall, if any: its storage calls are synchronous inside the
/// core, so a slow disk shows as the node taking that long to act on a request or message.
async fn stall(disk_stall: &DiskStall) {
    let ms = disk_stall.load(Ordering::Relaxed);
    if ms > 0 {
        madsim::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Serves an opened machine until the node is killed: clients on [`BROKER_PORT`], peers
/// (when `peers` is set) on [`PEER_PORT`]. Returns the shared node once it is listening, for
/// the run's checkers, through `ready`.
pub async fn serve<M: Machine + Send + 'static>(
    machine: M,
    id: i32,
    faults: MachineFaults,
    peers: bool,
    observer: Observer<M>,
    trace: Trace,
    ready: impl FnOnce(SharedNode<M>),
) {
    let state = NodeState {
        driver: Driver::new(machine, now()),
        connections: HashMap::new(),
        next_connection: 0,
        observer,
        id,
        trace,
        peer_down: None,
        armed_at: Millis(i64::MAX),
        shutdown: Shutdown::None,
    };
    let shared = SharedNode(Arc::new(Mutex::new(state)), Arc::new(Notify::new()));
    ready(shared.clone());
    let endpoint = if peers {
        let endpoint = Endpoint::bind(("0.0.0.0", PEER_PORT))
            .await
            .expect("bind peer port");
        Some(Arc::new(endpoint))
    } else {
        None
    };
    if let Some(endpoint) = &endpoint {
        let (sender, mut downs) = mpsc::unbounded_channel();
        shared.lock().peer_down = Some(sender);
        let (shared, endpoint, faults) = (shared.clone(), endpoint.clone(), faults.clone());
        madsim::task::spawn(async move {
            while let Some(peer) = downs.recv().await {
                let outgoing = {
                    let mut state = shared.lock();
                    if let Err(err) = state.driver.handle_peer_down(now(), peer) {
                        state.failed(err);
                    }
                    state.dispatch()
                };
                shared.rearm();
                send_all(&endpoint, outgoing, &faults).await;
            }
        });
    }
    if let Some(endpoint) = &endpoint {
        let (shared, endpoint, faults) = (shared.clone(), endpoint.clone(), faults.clone());
        let disk_stall = faults.disk_stall.clone();
        madsim::task::spawn(async move {
            loop {
                let Ok((payload, from)) = endpoint.recv_from_raw(PEER_TAG).await else {
                    continue;
                };
                stall(&disk_stall).await;
                let (Ok(bytes), Some(from)) = (payload.downcast::<Vec<u8>>(), node_of(from)) else {
                    continue;
                };
                let outgoing = {
                    let mut state = shared.lock();
                    if let Err(err) = state.driver.handle_peer_message(now(), from, &bytes) {
                        state.failed(err);
                    }
                    state.dispatch()
                };
                shared.rearm();
                send_all(&endpoint, outgoing, &faults).await;
            }
        });
    }
    // Timers: sleep until the next deadline, or until an input moves it.
    {
        let (shared, endpoint, faults) = (shared.clone(), endpoint.clone(), faults.clone());
        madsim::task::spawn(async move {
            loop {
                let wait = {
                    let mut state = shared.lock();
                    let wait = (state.driver.next_deadline().0 - now().0).max(1);
                    state.armed_at = Millis(now().0 + wait);
                    wait
                };
                // `biased`: tokio's random branch order would escape the seed.
                tokio::select! {
                    biased;
                    _ = madsim::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = shared.1.notified() => {}
                }
                let outgoing = {
                    let mut state = shared.lock();
                    if state.shutdown == Shutdown::Asked {
                        state.shutdown = Shutdown::Begun;
                        if let Err(err) = state.driver.begin_shutdown(now()) {
                            state.failed(err);
                        }
                        state.dispatch()
                    } else if state.driver.next_deadline() > now() {
                        continue;
                    } else {
                        if let Err(err) = state.driver.handle_tick(now()) {
                            state.failed(err);
                        }
                        state.dispatch()
                    }
                };
                if let Some(endpoint) = &endpoint {
                    send_all(endpoint, outgoing, &faults).await;
                }
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
        let (shared, endpoint, faults) = (shared.clone(), endpoint.clone(), faults.clone());
        madsim::task::spawn(async move {
            let (sender, receiver) = mpsc::unbounded_channel();
            let connection = {
                let mut state = shared.lock();
                state.next_connection += 1;
                let connection = ConnectionId(state.next_connection);
                state.connections.insert(connection, sender);
                connection
            };
            let _ = serve_client(stream, connection, receiver, &shared, endpoint, faults).await;
            let mut state = shared.lock();
            state.connections.remove(&connection);
            state.driver.connection_closed(connection);
        });
    }
}

/// Runs a single node — a cluster of one voter, as `brook server` runs without cluster
/// flags — over `disk` until it is killed.
pub async fn run_broker(disk: SimDisk, config: BrokerConfig, trace: Trace, faults: MachineFaults) {
    let incarnation: u64 = madsim::rand::thread_rng().gen();
    let voters = vec![NodeId(config.node_id)];
    let node = match ClusterNode::open(disk, NodeConfig::new(config, voters, incarnation), now()) {
        Ok(node) => node,
        Err(err) => {
            trace.record(format!("{} broker: cannot open: {err}", now().0));
            return;
        }
    };
    trace.record(format!(
        "{} broker: open, topics {:?}",
        now().0,
        node.broker().topic_names()
    ));
    let observer: Observer<ClusterNode<SimDisk>> = Box::new(|_| {});
    serve(node, 1, faults, false, observer, trace, |_| {}).await;
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
/// loss: the protocols above retry what matters), and follower fetches are held back while
/// the node's fetcher is stalled.
async fn send_all(endpoint: &Endpoint, outgoing: Vec<(NodeId, Vec<u8>)>, faults: &MachineFaults) {
    let loss_per_mille = faults.loss_per_mille;
    let stalled = faults.fetcher_stalled.load(Ordering::Relaxed);
    for (to, bytes) in outgoing {
        if loss_per_mille > 0 && madsim::rand::thread_rng().gen_range(0..1000) < loss_per_mille {
            continue;
        }
        if stalled && matches!(PeerMessage::decode(&bytes), Ok(PeerMessage::Fetch { .. })) {
            continue;
        }
        let last = u8::try_from(to.0).unwrap_or(0);
        let ip = std::net::Ipv4Addr::new(10, 0, 0, last);
        let addr = SocketAddr::new(std::net::IpAddr::V4(ip), PEER_PORT);
        // A datagram to a node that is down is lost, as on a real network.
        let _ = endpoint.send_to_raw(addr, PEER_TAG, Box::new(bytes)).await;
    }
}

/// One client connection: a frame in, the driver's answer out, one request at a time.
async fn serve_client<M: Machine + Send>(
    mut stream: TcpStream,
    connection: ConnectionId,
    mut answers: mpsc::UnboundedReceiver<Answer>,
    shared: &SharedNode<M>,
    endpoint: Option<Arc<Endpoint>>,
    faults: MachineFaults,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let context = RequestContext::default();
    loop {
        let len = loop {
            match frame_len(&buf, REQUEST_BYTES_MAX) {
                Ok(Some(len)) => break len,
                Ok(None) => {}
                Err(_) => return Ok(()),
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let mut frame = buf.split_to(4 + len);
        let _ = frame.split_to(4);
        stall(&faults.disk_stall).await;
        let outgoing = {
            let mut state = shared.lock();
            let handled = state
                .driver
                .handle_frame(now(), connection, &context, frame.freeze());
            if let Err(err) = handled {
                state.failed(err);
            }
            state.dispatch()
        };
        shared.rearm();
        if let Some(endpoint) = &endpoint {
            send_all(endpoint, outgoing, &faults).await;
        }
        let Some(Answer::Respond(api, bytes)) = answers.recv().await else {
            return Ok(());
        };
        let lost = faults.produce_responses_lost_per_mille;
        if api == ApiKey::Produce
            && lost > 0
            && madsim::rand::thread_rng().gen_range(0..1000) < lost
        {
            return Ok(()); // the connection drops with the response
        }
        if !bytes.is_empty() {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
        }
    }
}
