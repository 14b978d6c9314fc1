//! The peer transport: the messages cluster nodes exchange (quorum, registration and
//! heartbeats, ISR changes, follower fetches), over TCP on each node's controller listener.
//!
//! Each node dials every other voter once and keeps that connection for what it sends; what
//! it receives comes on the connections the others dialled. A node that is not a voter is
//! dialled once a message is first sent to it, at the peer address its registration names. A connection opens with a hello —
//! `BRKP`, version 2, the sender's node id, cluster id and peer address — and then carries
//! size-prefixed messages. The address lets a voter answer a node that is not a voter
//! before its registration names it. Like the simulator's datagrams, a message may be lost (a peer down, a queue
//! full, a connection reset): the protocols above retry what matters. A hello from another
//! cluster, or a frame above [`PEER_FRAME_MAX`], closes the connection.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use brook_core::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc as async_mpsc;

use crate::node::Input;

/// The largest peer message accepted (a follower fetch response holds at most
/// `replica.fetch.response.max.bytes` of records).
pub const PEER_FRAME_MAX: usize = 128 << 20;
/// Messages queued for one peer while it is slow or down; more are dropped.
const QUEUE_MAX: usize = 4_096;
const MAGIC: &[u8; 4] = b"BRKP";
const VERSION: u16 = 2;
/// The most peer addresses kept from hellos.
const LEARNT_MAX: usize = 1_024;

/// Hands messages to the connections to the other nodes, without waiting.
#[derive(Default)]
pub struct PeerSender {
    /// Each peer's queue, with the address dialled for a peer learnt while running (`None`
    /// for a voter, whose address is fixed by the voters list).
    queues: BTreeMap<NodeId, (async_mpsc::Sender<Vec<u8>>, Option<String>)>,
    /// What dialling a peer learnt later needs (none for a single broker).
    dialer: Option<Dialer>,
    /// Peer addresses from the hellos of nodes that dialled this one.
    learnt: BTreeMap<NodeId, String>,
}

/// Starts connections to peers from the driver thread.
struct Dialer {
    runtime: tokio::runtime::Handle,
    hello: Vec<u8>,
    inputs: mpsc::Sender<Input>,
}

impl PeerSender {
    /// Queues `bytes` for `to`; dropped when its queue is full, or when `to` is neither
    /// connected nor has an address — from `address` (its registration), or from its hello
    /// — (then it is dialled there first). A peer learnt while running whose registration
    /// names another address than the one dialled (it restarted elsewhere) is dialled anew.
    pub fn send(&mut self, to: NodeId, bytes: Vec<u8>, address: impl FnOnce() -> Option<String>) {
        let redial = match self.queues.get(&to) {
            Some((_, None)) => None,
            Some((_, Some(dialled))) => address().filter(|addr| addr != dialled),
            None => address().or_else(|| self.learnt.get(&to).cloned()),
        };
        if let (Some(addr), Some(dialer)) = (redial, &self.dialer) {
            // A replaced queue's sender is dropped: its dial task ends.
            let (queue, messages) = async_mpsc::channel(QUEUE_MAX);
            let down = (dialer.inputs.clone(), to);
            let hello = dialer.hello.clone();
            dialer
                .runtime
                .spawn(dial(addr.clone(), hello, messages, down));
            self.queues.insert(to, (queue, Some(addr)));
        }
        if let Some((queue, _)) = self.queues.get(&to) {
            let _ = queue.try_send(bytes);
        }
    }

    /// Keeps the address a peer's hello named, for when a message is first sent to it (a
    /// bounded number of peers).
    pub fn learn(&mut self, peer: NodeId, addr: String) {
        if self.learnt.contains_key(&peer) || self.learnt.len() < LEARNT_MAX {
            self.learnt.insert(peer, addr);
        }
    }
}

/// Starts the transport of node `node` in `cluster_id`: a task accepting the other nodes'
/// connections on `listener` (their messages become [`Input::Peer`]s), and one task per peer
/// in `peers` (id, `HOST:PORT`) dialling it, again after each failure. Runs on the current
/// tokio runtime.
pub fn start(
    node: NodeId,
    cluster_id: String,
    address: &str,
    listener: TcpListener,
    peers: &[(i32, String)],
    inputs: mpsc::Sender<Input>,
) -> PeerSender {
    let hello = hello(node, &cluster_id, address);
    let mut sender = PeerSender {
        learnt: BTreeMap::new(),
        queues: BTreeMap::new(),
        dialer: Some(Dialer {
            runtime: tokio::runtime::Handle::current(),
            hello: hello.clone(),
            inputs: inputs.clone(),
        }),
    };
    for (id, addr) in peers {
        if *id == node.0 {
            continue;
        }
        let (queue, messages) = async_mpsc::channel(QUEUE_MAX);
        sender.queues.insert(NodeId(*id), (queue, None));
        let down = (inputs.clone(), NodeId(*id));
        tokio::spawn(dial(addr.clone(), hello.clone(), messages, down));
    }
    tokio::spawn(accept(listener, cluster_id, inputs));
    sender
}

fn hello(node: NodeId, cluster_id: &str, address: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + cluster_id.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&node.0.to_be_bytes());
    out.extend_from_slice(&(cluster_id.len() as u16).to_be_bytes());
    out.extend_from_slice(cluster_id.as_bytes());
    out.extend_from_slice(&(address.len() as u16).to_be_bytes());
    out.extend_from_slice(address.as_bytes());
    out
}

/// Keeps a connection to one peer and writes its queued messages; reconnects after a
/// failure with a growing pause (50 ms to 1 s). A lost connection, or a peer that cannot be
/// reached, is reported to the driver (once until it is reached again). Ends when the sender
/// side is gone.
async fn dial(
    addr: String,
    hello: Vec<u8>,
    mut messages: async_mpsc::Receiver<Vec<u8>>,
    (inputs, peer): (mpsc::Sender<Input>, NodeId),
) {
    let mut pause = Duration::from_millis(50);
    let mut reported = false;
    let report = |reported: &mut bool| {
        if !std::mem::replace(reported, true) {
            let _ = inputs.send(Input::PeerDown(peer));
        }
    };
    loop {
        let mut stream = match TcpStream::connect(&addr).await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%addr, "cannot reach peer: {err}");
                report(&mut reported);
                // Messages for a peer that is down are lost, as the protocols expect.
                while messages.try_recv().is_ok() {}
                if messages.is_closed() {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if stream.write_all(&hello).await.is_err() {
            continue;
        }
        pause = Duration::from_millis(50);
        reported = false;
        tracing::info!(%addr, "connected to peer");
        loop {
            let Some(message) = messages.recv().await else {
                return;
            };
            let mut frame = Vec::with_capacity(4 + message.len());
            frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
            frame.extend_from_slice(&message);
            if let Err(err) = stream.write_all(&frame).await {
                tracing::info!(%addr, "lost the connection to peer: {err}");
                report(&mut reported);
                break;
            }
        }
    }
}

async fn accept(listener: TcpListener, cluster_id: String, inputs: mpsc::Sender<Input>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!("peer accept failed: {err}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (cluster_id, inputs) = (cluster_id.clone(), inputs.clone());
        tokio::spawn(async move {
            if let Err(err) = receive(stream, &cluster_id, inputs).await {
                tracing::debug!(%addr, "peer connection closed: {err}");
            }
        });
    }
}

/// Reads a peer's hello, then its messages into the driver's inputs; once the connection
/// of a peer that said hello ends, the driver is told it is down.
async fn receive(
    mut stream: TcpStream,
    cluster_id: &str,
    inputs: mpsc::Sender<Input>,
) -> std::io::Result<()> {
    let refuse = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    if &head[..4] != MAGIC || u16::from_be_bytes([head[4], head[5]]) != VERSION {
        return Err(refuse("not a Brook peer hello".into()));
    }
    let from = NodeId(i32::from_be_bytes([head[6], head[7], head[8], head[9]]));
    let mut theirs = vec![0u8; usize::from(u16::from_be_bytes([head[10], head[11]]))];
    stream.read_exact(&mut theirs).await?;
    if theirs != cluster_id.as_bytes() {
        let theirs = String::from_utf8_lossy(&theirs).into_owned();
        tracing::warn!(
            "refused node {} of cluster {theirs}: this is cluster {cluster_id}",
            from.0
        );
        return Err(refuse(format!("peer of another cluster ({theirs})")));
    }
    let len = stream.read_u16().await?;
    let mut address = vec![0u8; usize::from(len)];
    stream.read_exact(&mut address).await?;
    let address =
        String::from_utf8(address).map_err(|_| refuse("a peer address not UTF-8".into()))?;
    if inputs.send(Input::PeerAddress { from, address }).is_err() {
        return Ok(());
    }
    let result = async {
        loop {
            let len = stream.read_u32().await? as usize;
            if len > PEER_FRAME_MAX {
                return Err(refuse(format!("peer message of {len} bytes")));
            }
            let mut bytes = vec![0u8; len];
            stream.read_exact(&mut bytes).await?;
            if inputs.send(Input::Peer { from, bytes }).is_err() {
                return Ok(()); // the driver stopped
            }
        }
    }
    .await;
    let _ = inputs.send(Input::PeerDown(from));
    result
}
