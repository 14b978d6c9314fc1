//! What the driver needs of a state machine: the cluster node (a single node is a cluster of
//! one voter).

use kafka_protocol::messages::ResponseKind;

use crate::broker::{Broker, ParkedId, Reply, RequestContext, StorageProvider};
use crate::node::{ClusterNode, NodeError};
use crate::protocol::{FetchResponseData, Request};
use crate::types::{Millis, NodeId};

/// A parked request that is answered now.
#[derive(Debug)]
pub enum Completed {
    /// A Fetch response (its records come from the machine's files).
    Fetch(ParkedId, FetchResponseData),
    /// Any other response.
    Response(ParkedId, Box<ResponseKind>),
}

/// A state machine the [`Driver`](super::Driver) runs: inputs in, completions and peer
/// messages out, nothing done by itself.
pub trait Machine {
    /// The storage its broker's files live in.
    type Provider: StorageProvider;

    /// A client request.
    fn handle_request(
        &mut self,
        now: Millis,
        context: &RequestContext,
        request: Request,
    ) -> Result<Reply, NodeError>;

    /// A message from a peer node.
    fn handle_peer_message(
        &mut self,
        now: Millis,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), NodeError>;

    /// The connection to a peer node was lost.
    fn handle_peer_down(&mut self, now: Millis, peer: NodeId) -> Result<(), NodeError>;

    /// The timers due at `now`.
    fn handle_tick(&mut self, now: Millis) -> Result<(), NodeError>;

    /// When the next timer is due, if any.
    fn next_deadline(&self) -> Option<Millis>;

    /// Drains the parked requests answered since the last call.
    fn poll_completed(&mut self) -> Vec<Completed>;

    /// Drains the messages for peers: (to, bytes).
    fn poll_outgoing(&mut self) -> Vec<(NodeId, Vec<u8>)>;

    /// Forgets a parked request whose connection went away.
    fn cancel_parked(&mut self, id: ParkedId);

    /// Whether client requests are served now.
    fn is_serving(&self) -> bool;

    /// Begins a controlled shutdown: hand leadership and duties to peers.
    fn begin_shutdown(&mut self, now: Millis) -> Result<(), NodeError>;

    /// Whether a controlled shutdown has handed over what it can, so the shell may stop.
    fn shutdown_complete(&self) -> bool;

    /// The failures of background work since the last call.
    fn poll_background_errors(&mut self) -> Vec<String>;

    /// The broker whose files answers' file ranges point into.
    fn broker(&self) -> &Broker<Self::Provider>;

    /// Where `peer` takes peer messages (`HOST:PORT`), when its registration names it.
    fn peer_address(&self, peer: NodeId) -> Option<String>;

    /// Closes the logs cleanly.
    fn close(self) -> Result<(), String>;
}

/// A cluster node: serving once caught up with the metadata log.
impl<P: StorageProvider> Machine for ClusterNode<P> {
    type Provider = P;

    fn handle_request(
        &mut self,
        now: Millis,
        context: &RequestContext,
        request: Request,
    ) -> Result<Reply, NodeError> {
        ClusterNode::handle_request(self, now, context, request)
    }

    fn handle_peer_message(
        &mut self,
        now: Millis,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<(), NodeError> {
        ClusterNode::handle_peer_message(self, now, from, bytes)
    }

    fn handle_peer_down(&mut self, now: Millis, peer: NodeId) -> Result<(), NodeError> {
        ClusterNode::handle_peer_down(self, now, peer)
    }

    fn handle_tick(&mut self, now: Millis) -> Result<(), NodeError> {
        ClusterNode::handle_tick(self, now)
    }

    fn next_deadline(&self) -> Option<Millis> {
        Some(ClusterNode::next_deadline(self))
    }

    fn poll_completed(&mut self) -> Vec<Completed> {
        ClusterNode::poll_completed(self)
    }

    fn poll_outgoing(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        ClusterNode::poll_outgoing(self)
    }

    fn cancel_parked(&mut self, id: ParkedId) {
        ClusterNode::cancel_parked(self, id);
    }

    fn is_serving(&self) -> bool {
        ClusterNode::is_serving(self)
    }

    fn begin_shutdown(&mut self, now: Millis) -> Result<(), NodeError> {
        ClusterNode::begin_shutdown(self, now)
    }

    fn shutdown_complete(&self) -> bool {
        ClusterNode::shutdown_complete(self)
    }

    fn poll_background_errors(&mut self) -> Vec<String> {
        ClusterNode::poll_background_errors(self)
    }

    fn broker(&self) -> &Broker<P> {
        ClusterNode::broker(self)
    }

    fn peer_address(&self, peer: NodeId) -> Option<String> {
        let registration = &self.image().brokers().get(&peer)?.registration;
        Some(registration.peer.clone()).filter(|addr| !addr.is_empty())
    }

    fn close(self) -> Result<(), String> {
        ClusterNode::close(self).map_err(|err| err.to_string())
    }
}
