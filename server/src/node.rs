//! The driver thread: the one owner of core's [`Driver`] in a running server.
//!
//! Connection tasks and the peer transport send it [`Input`]s over a channel; it feeds them
//! to the driver, sleeps until the next input or the driver's next deadline, and carries out
//! the effects — answers go back to their connection task, peer messages to the peer
//! transport. Storage work (appends, syncs, recovery, retention) thus runs on this thread,
//! never under a lock on tokio's worker threads, and the tokio side only moves bytes.
//! [`NodeThread::stop`] is an input like the others: the requests sent before it are
//! answered, then the machine closes its logs and the thread ends. Before it, a controlled
//! shutdown ([`NodeThread::begin_shutdown`]) lets a cluster node hand its leadership over
//! while it still serves; [`NodeThread::handed_off`] returns once it has.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use brook_core::broker::RequestContext;
use brook_core::driver::{ConnectionId, Driver, Effect, Machine};
use brook_core::protocol::Part;
use brook_core::NodeId;
use bytes::Bytes;
use tokio::sync::mpsc as async_mpsc;

use crate::net::now;
use crate::peer::PeerSender;

/// What the driver thread is told.
pub enum Input {
    /// A connection opened; its answers go to `answers`.
    Open {
        /// The connection.
        connection: ConnectionId,
        /// Where its answers go.
        answers: async_mpsc::UnboundedSender<Answer>,
    },
    /// A request frame (without its size prefix).
    Frame {
        /// The connection.
        connection: ConnectionId,
        /// What is known of the client.
        context: RequestContext,
        /// The frame.
        frame: Bytes,
    },
    /// The connection closed.
    Closed(ConnectionId),
    /// A message from a peer node.
    Peer {
        /// The sender.
        from: NodeId,
        /// The message.
        bytes: Vec<u8>,
    },
    /// The connection from or to a peer node was lost.
    PeerDown(NodeId),
    /// A peer that dialled this node names the address it takes messages at.
    PeerAddress {
        /// The peer.
        from: NodeId,
        /// Its `HOST:PORT`.
        address: String,
    },
    /// Begin a controlled shutdown: hand leadership over, keep serving.
    BeginShutdown,
    /// Answer what came before, close the logs and end.
    Stop,
}

/// What a connection task is handed for its request.
pub enum Answer {
    /// Write these parts (none for acks=0).
    Respond(Vec<Part>),
    /// Close the connection, for this reason.
    Close(String),
}

/// The running driver thread.
pub struct NodeThread {
    inputs: mpsc::Sender<Input>,
    thread: JoinHandle<Result<(), String>>,
    /// Fires when the thread ends.
    ended: tokio::sync::watch::Receiver<bool>,
    /// Fires when a controlled shutdown has handed over what it can.
    handed_off: tokio::sync::watch::Receiver<bool>,
    /// Whether the machine serves clients, after each input.
    serving: tokio::sync::watch::Receiver<bool>,
}

impl NodeThread {
    /// Starts the thread over an opened machine; peer messages go to `peers`.
    pub fn start<M: Machine + Send + 'static>(machine: M, peers: PeerSender) -> NodeThread {
        let (inputs, receiver) = mpsc::channel();
        NodeThread::start_with(machine, peers, inputs, receiver)
    }

    /// [`NodeThread::start`] on a channel made earlier (the peer transport's inputs go to it).
    pub fn start_with<M: Machine + Send + 'static>(
        machine: M,
        peers: PeerSender,
        inputs: mpsc::Sender<Input>,
        receiver: mpsc::Receiver<Input>,
    ) -> NodeThread {
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let (handed_tx, handed_off) = tokio::sync::watch::channel(false);
        let (serving_tx, serving) = tokio::sync::watch::channel(false);
        let watches = Watches {
            handed_off: handed_tx,
            serving: serving_tx,
        };
        let thread = std::thread::Builder::new()
            .name("brook-driver".into())
            .spawn(move || {
                let driver = Driver::new(machine, now());
                let result = run(driver, receiver, peers, watches);
                let _ = ended_tx.send(true);
                result
            })
            .expect("spawn the driver thread");
        NodeThread {
            inputs,
            thread,
            ended,
            handed_off,
            serving,
        }
    }

    /// Returns once the machine serves clients (a one-node cluster, once it leads its
    /// quorum and has its broker registered), or the thread ended.
    pub async fn serving(&self) {
        let mut serving = self.serving.clone();
        let _ = serving.wait_for(|serving| *serving).await;
    }

    /// Begins a controlled shutdown (see the module doc).
    pub fn begin_shutdown(&self) {
        let _ = self.inputs.send(Input::BeginShutdown);
    }

    /// Returns once a controlled shutdown has handed over what it can (or the thread ended).
    pub async fn handed_off(&self) {
        let mut handed_off = self.handed_off.clone();
        let _ = handed_off.wait_for(|done| *done).await;
    }

    /// A sender of inputs, for connection tasks and the peer transport.
    pub fn inputs(&self) -> mpsc::Sender<Input> {
        self.inputs.clone()
    }

    /// Returns once the thread ended by itself (a machine error).
    pub async fn ended(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Stops the thread once the inputs before are handled; the machine's close result.
    pub fn stop(self) -> Result<(), String> {
        let _ = self.inputs.send(Input::Stop);
        self.thread
            .join()
            .unwrap_or_else(|_| Err("the driver thread panicked".into()))
    }
}

/// What the driver thread reports of its machine.
struct Watches {
    handed_off: tokio::sync::watch::Sender<bool>,
    serving: tokio::sync::watch::Sender<bool>,
}

fn run<M: Machine>(
    mut driver: Driver<M>,
    inputs: mpsc::Receiver<Input>,
    mut peers: PeerSender,
    watches: Watches,
) -> Result<(), String> {
    let Watches {
        handed_off,
        serving,
    } = watches;
    let mut connections = std::collections::HashMap::new();
    let mut shutting_down = false;
    loop {
        let wait = (driver.next_deadline().0 - now().0).max(0) as u64;
        let handled = match inputs.recv_timeout(Duration::from_millis(wait)) {
            Ok(Input::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(()),
            Ok(Input::Open {
                connection,
                answers,
            }) => {
                connections.insert(connection, answers);
                Ok(())
            }
            Ok(Input::Frame {
                connection,
                context,
                frame,
            }) => driver.handle_frame(now(), connection, &context, frame),
            Ok(Input::Closed(connection)) => {
                connections.remove(&connection);
                driver.connection_closed(connection);
                Ok(())
            }
            Ok(Input::Peer { from, bytes }) => driver.handle_peer_message(now(), from, &bytes),
            Ok(Input::PeerDown(peer)) => driver.handle_peer_down(now(), peer),
            Ok(Input::PeerAddress { from, address }) => {
                peers.learn(from, address);
                Ok(())
            }
            Ok(Input::BeginShutdown) => {
                shutting_down = true;
                driver.begin_shutdown(now())
            }
        };
        let ticked = if driver.next_deadline() <= now() {
            driver.handle_tick(now())
        } else {
            Ok(())
        };
        for error in driver.poll_background_errors() {
            tracing::error!("background work failed: {error}");
        }
        for effect in driver.poll_effects() {
            match effect {
                Effect::Respond {
                    connection, parts, ..
                } => {
                    if let Some(answers) = connections.get(&connection) {
                        let _ = answers.send(Answer::Respond(parts));
                    }
                }
                Effect::Close { connection, reason } => {
                    if let Some(answers) = connections.get(&connection) {
                        let _ = answers.send(Answer::Close(reason));
                    }
                }
                Effect::Peer { to, bytes } => {
                    peers.send(to, bytes, || driver.machine().peer_address(to))
                }
            }
        }
        serving.send_if_modified(|serving| {
            let now_serving = driver.machine().is_serving();
            std::mem::replace(serving, now_serving) != now_serving
        });
        if shutting_down && driver.shutdown_complete() && !*handed_off.borrow() {
            let _ = handed_off.send(true);
        }
        if let Err(err) = handled.and(ticked) {
            tracing::error!("the node stopped: {err}");
            let _ = driver.close();
            return Err(err.to_string());
        }
    }
    driver.close()
}
