//! The driver: everything between a byte stream and the state machine, without I/O — the one
//! piece the `brook` server and the simulator both run, so what the simulator checks is what
//! ships.
//!
//! A [`Driver`] owns a [`Machine`] (a single [`Broker`](crate::broker::Broker) or a
//! [`ClusterNode`](crate::node::ClusterNode)) and does what every shell would otherwise do
//! for itself: it decodes request frames (answering an ApiVersions it cannot decode in v0, as
//! KIP-511 asks), hands requests to the machine, keeps the table of parked requests — each
//! under its typed [`ParkedId`], with the connection and the api, version and correlation id
//! its answer is encoded with — encodes every answer (Fetch responses as [`Part`]s, so record
//! bytes can go from files to the socket untouched), forgets the parked requests of a closed
//! connection, runs the timers, and turns the machine's peer messages into effects.
//!
//! Call order for a shell: [`Driver::new`]; then, in any order, [`Driver::handle_frame`] for
//! each request frame of a connection (one at a time per connection: the next frame only after
//! the connection's [`Effect::Respond`] — so responses keep their requests' order),
//! [`Driver::handle_peer_message`], [`Driver::handle_peer_down`], [`Driver::connection_closed`], and [`Driver::handle_tick`]
//! once the clock reaches [`Driver::next_deadline`]; after each input, carry out
//! [`Driver::poll_effects`] in order. [`Driver::close`] at the end.
//!
//! Every request frame gets exactly one [`Effect::Respond`] (empty for a Produce with acks=0)
//! or one [`Effect::Close`], now or later. After a machine error the driver is failed: it
//! reports the error once, closes every connection that sends a frame and ignores the rest,
//! like a process that stopped serving but has not exited.

mod machine;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseKind};

pub use machine::{Completed, Machine};

use crate::broker::{api_versions, ParkedId, Reply, RequestContext};
use crate::error::ErrorCode;
use crate::node::NodeError;
use crate::protocol::{
    decode_request, encode_fetch_response, encode_response_for, FetchResponseData, Part,
    ProtocolError,
};
use crate::types::{Millis, NodeId};

/// How often the driver runs the machine's time-based work (retention, compaction,
/// `flush.ms`, group offset expiry checks) when nothing else is due: Brook's
/// `log.retention.check.interval.ms` (Kafka's is five minutes; a second keeps `flush.ms` and
/// `segment.ms` close to their settings).
pub const HOUSEKEEPING_MS: i64 = 1_000;

/// A client connection, as the shell numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// What the shell must do, in the order given.
#[derive(Debug)]
pub enum Effect {
    /// Write the answer to the connection's request: bytes as they are, file ranges from the
    /// machine's files (`sendfile`, or [`Driver::read_parts`]). Empty for acks=0.
    Respond {
        /// The connection.
        connection: ConnectionId,
        /// The request's API (the simulator may drop Produce answers with their connection).
        api: ApiKey,
        /// The response, size prefix and header included.
        parts: Vec<Part>,
    },
    /// Close the connection: its frame did not decode, or the node is not serving yet.
    Close {
        /// The connection.
        connection: ConnectionId,
        /// Why, for the log.
        reason: String,
    },
    /// Send a message to a peer node (it may be lost: the protocols retry what matters).
    Peer {
        /// The node.
        to: NodeId,
        /// The encoded message.
        bytes: Vec<u8>,
    },
}

/// Who waits for a parked request, and how its answer is encoded.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    connection: ConnectionId,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
}

/// The driver over one machine. See the module doc.
pub struct Driver<M: Machine> {
    machine: M,
    parked: BTreeMap<ParkedId, Waiter>,
    /// The parked request of each connection (a connection has at most one in flight).
    by_connection: BTreeMap<ConnectionId, ParkedId>,
    effects: Vec<Effect>,
    /// When the time-based work last ran.
    last_housekeeping: Millis,
    /// Set by the first machine error; the driver then serves nothing.
    failed: Option<String>,
}

impl<M: Machine> Driver<M> {
    /// Wraps an opened machine; `now` starts its housekeeping clock.
    pub fn new(machine: M, now: Millis) -> Driver<M> {
        Driver {
            machine,
            parked: BTreeMap::new(),
            by_connection: BTreeMap::new(),
            effects: Vec::new(),
            last_housekeeping: now,
            failed: None,
        }
    }

    /// The machine, for shells that read its files or state.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Why the driver stopped serving, once a machine error stopped it.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// How many requests are parked (for tests and shutdown).
    pub fn parked_count(&self) -> usize {
        self.parked.len()
    }

    /// One request frame (without its size prefix) from `connection`.
    pub fn handle_frame(
        &mut self,
        now: Millis,
        connection: ConnectionId,
        context: &RequestContext,
        frame: Bytes,
    ) -> Result<(), NodeError> {
        if let Some(reason) = &self.failed {
            let reason = format!("the node stopped: {reason}");
            self.effects.push(Effect::Close { connection, reason });
            return Ok(());
        }
        let request = match decode_request(frame) {
            Ok(request) => request,
            Err(ProtocolError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => {
                // KIP-511: answer in v0 with the supported range so the client retries.
                let response = api_versions(ErrorCode::UnsupportedVersion);
                let waiter = Waiter {
                    connection,
                    api: ApiKey::ApiVersions,
                    version: 0,
                    correlation_id,
                };
                self.respond(waiter, &response);
                return Ok(());
            }
            Err(err) => {
                let reason = err.to_string();
                self.effects.push(Effect::Close { connection, reason });
                return Ok(());
            }
        };
        if !self.machine.is_serving() {
            // Not caught up with the metadata log yet: the client tries another node.
            let reason = "not serving yet (catching up with the cluster metadata)".to_string();
            self.effects.push(Effect::Close { connection, reason });
            return Ok(());
        }
        let waiter = Waiter {
            connection,
            api: request.api_key,
            version: request.api_version,
            correlation_id: request.correlation_id,
        };
        let reply = self.machine.handle_request(now, context, request);
        match reply {
            Ok(Reply::Response(response)) => self.respond(waiter, &response),
            Ok(Reply::Fetch(data)) => self.respond_fetch(waiter, &data),
            Ok(Reply::None) => self.effects.push(Effect::Respond {
                connection,
                api: waiter.api,
                parts: Vec::new(),
            }),
            Ok(Reply::Parked(id)) => {
                self.parked.insert(id, waiter);
                self.by_connection.insert(connection, id);
            }
            Err(err) => {
                self.effects.push(Effect::Close {
                    connection,
                    reason: err.to_string(),
                });
                return self.fail(err);
            }
        }
        self.collect();
        Ok(())
    }

    /// A message from peer `from`.
    pub fn handle_peer_message(
        &mut self,
        now: Millis,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), NodeError> {
        self.step(|machine| machine.handle_peer_message(now, from, bytes))
    }

    /// The shell lost its connection to peer `peer` (reset, or closed by a dying process).
    pub fn handle_peer_down(&mut self, now: Millis, peer: NodeId) -> Result<(), NodeError> {
        self.step(|machine| machine.handle_peer_down(now, peer))
    }

    /// The connection went away: its parked request, if any, is forgotten.
    pub fn connection_closed(&mut self, connection: ConnectionId) {
        if let Some(id) = self.by_connection.remove(&connection) {
            self.parked.remove(&id);
            self.machine.cancel_parked(id);
        }
    }

    /// Runs the timers that are due at `now` (calling it early does no harm).
    pub fn handle_tick(&mut self, now: Millis) -> Result<(), NodeError> {
        if self.failed.is_none() {
            self.last_housekeeping = now;
        }
        self.step(|machine| machine.handle_tick(now))
    }

    /// When [`Driver::handle_tick`] should next run: the machine's earliest timer, or the
    /// housekeeping interval when none is sooner.
    pub fn next_deadline(&self) -> Millis {
        let housekeeping = Millis(self.last_housekeeping.0 + HOUSEKEEPING_MS);
        match self.machine.next_deadline() {
            Some(deadline) => deadline.min(housekeeping),
            None => housekeeping,
        }
    }

    /// Begins a controlled shutdown (the machine hands its leadership to peers); the shell
    /// keeps driving until [`Driver::shutdown_complete`], or its timeout, then stops.
    pub fn begin_shutdown(&mut self, now: Millis) -> Result<(), NodeError> {
        self.step(|machine| machine.begin_shutdown(now))
    }

    /// Whether a controlled shutdown handed over what it can (always, once failed).
    pub fn shutdown_complete(&self) -> bool {
        self.failed.is_some() || self.machine.shutdown_complete()
    }

    /// Drains the effects of the inputs so far, in the order they must be carried out.
    pub fn poll_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The failures of background work since the last call, for the shell to log.
    pub fn poll_background_errors(&mut self) -> Vec<String> {
        self.machine.poll_background_errors()
    }

    /// A response's bytes with its file ranges read from the machine's storage: for shells
    /// without `sendfile` (the simulator). An error when a range's file is gone.
    pub fn read_parts(&self, parts: &[Part]) -> Result<Vec<u8>, String> {
        self.machine
            .broker()
            .read_parts(parts)
            .map_err(|err| err.to_string())
    }

    /// Closes the machine (its logs cleanly); parked requests are dropped unanswered.
    pub fn close(self) -> Result<(), String> {
        self.machine.close()
    }

    /// Turns what the machine completed and wants sent into effects.
    fn collect(&mut self) {
        for completed in self.machine.poll_completed() {
            let (id, answer) = match completed {
                Completed::Fetch(id, data) => (id, Ok(data)),
                Completed::Response(id, response) => (id, Err(response)),
            };
            let Some(waiter) = self.parked.remove(&id) else {
                continue; // its connection went away
            };
            self.by_connection.remove(&waiter.connection);
            match answer {
                Ok(data) => self.respond_fetch(waiter, &data),
                Err(response) => self.respond(waiter, &response),
            }
        }
        for (to, bytes) in self.machine.poll_outgoing() {
            self.effects.push(Effect::Peer { to, bytes });
        }
    }

    fn respond(&mut self, waiter: Waiter, response: &ResponseKind) {
        let connection = waiter.connection;
        match encode_response_for(waiter.api, waiter.version, waiter.correlation_id, response) {
            Ok(bytes) => self.effects.push(Effect::Respond {
                connection,
                api: waiter.api,
                parts: vec![Part::Bytes(bytes.freeze())],
            }),
            Err(err) => self.effects.push(Effect::Close {
                connection,
                reason: format!("cannot encode the response: {err}"),
            }),
        }
    }

    fn respond_fetch(&mut self, waiter: Waiter, data: &FetchResponseData) {
        let parts = encode_fetch_response(waiter.version, waiter.correlation_id, data);
        self.effects.push(Effect::Respond {
            connection: waiter.connection,
            api: waiter.api,
            parts,
        });
    }

    /// One input to the machine: nothing once failed; its completions and messages
    /// collected after, or the driver failed by its error.
    fn step(
        &mut self,
        input: impl FnOnce(&mut M) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        if self.failed.is_some() {
            return Ok(());
        }
        if let Err(err) = input(&mut self.machine) {
            return self.fail(err);
        }
        self.collect();
        Ok(())
    }

    fn fail(&mut self, err: NodeError) -> Result<(), NodeError> {
        self.failed = Some(err.to_string());
        Err(err)
    }
}
