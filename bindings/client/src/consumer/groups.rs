//! The consumer's group half: `subscribe`, rebalances inside `poll` (eager: revoke all,
//! join, restore committed positions, assign), commits (sync, async, explicit offsets,
//! automatic), `committed`, `unsubscribe` and `close`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Consumer, PartitionState};
use crate::error::Error;
use crate::group::GroupClient;
use crate::TopicPartition;

/// Callbacks around a rebalance, run on the task that calls `poll` (or `unsubscribe` and
/// `close`). With auto-commit, positions are committed before a rebalance, so before
/// `on_partitions_revoked`.
pub trait RebalanceListener: Send {
    /// The partitions are no longer this consumer's: under the eager protocol all of them,
    /// at every rebalance; under cooperative-sticky only those moving to another member.
    /// Commit or save progress here when auto-commit is off.
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]);
    /// The group gave this consumer `partitions` (possibly none) on top of what it kept
    /// (eager: everything it has); their positions are set.
    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]);
}

/// The subscription: topics and the application's callbacks.
pub(crate) struct Subscription {
    topics: Vec<String>,
    /// In a mutex only so the consumer stays `Sync` (futures holding `&Consumer` are then
    /// `Send`); it is reached through `&mut` and never locked.
    listener: Option<Mutex<Box<dyn RebalanceListener>>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topics", &self.topics)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

/// An asynchronous commit under way; dropping it does not cancel the commit.
#[derive(Debug)]
pub struct PendingCommit {
    result: oneshot::Receiver<Result<(), Error>>,
}

impl PendingCommit {
    /// Waits for the commit's outcome.
    pub async fn wait(self) -> Result<(), Error> {
        self.result.await.unwrap_or(Err(Error::Closed))
    }
}

impl Consumer {
    /// Joins the consumer's group subscribed to `topics`; the group's assignment arrives in
    /// the next `poll`. Needs `group_id`; refused while partitions are assigned by hand.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), Error> {
        self.subscribe_inner(topics, None)
    }

    /// Like [`Consumer::subscribe`], calling `listener` around every rebalance.
    pub fn subscribe_with_listener(
        &mut self,
        topics: &[&str],
        listener: Box<dyn RebalanceListener>,
    ) -> Result<(), Error> {
        self.subscribe_inner(topics, Some(listener))
    }

    fn subscribe_inner(
        &mut self,
        topics: &[&str],
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<(), Error> {
        self.group_client()?;
        if topics.is_empty() || topics.iter().any(|t| t.is_empty()) {
            return Err(Error::Config(
                "subscribe needs topic names; use unsubscribe to stop".into(),
            ));
        }
        if self.subscription.is_none() && !self.assignment.is_empty() {
            return Err(Error::InvalidState(
                "subscribe while partitions are assigned by hand; assign an empty list first"
                    .into(),
            ));
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        let changed = self.subscription.as_ref().map(|s| &s.topics) != Some(&topics);
        let listener = match (listener, self.subscription.take()) {
            (Some(new), _) => Some(Mutex::new(new)),
            (None, Some(old)) => old.listener,
            (None, None) => None,
        };
        self.subscription = Some(Subscription { topics, listener });
        if changed {
            self.group_client()?.request_rejoin();
        }
        Ok(())
    }

    /// The subscribed topics (empty when not subscribed).
    pub fn subscription(&self) -> Vec<String> {
        self.subscription
            .as_ref()
            .map(|s| s.topics.clone())
            .unwrap_or_default()
    }

    /// Leaves the group: commits (with auto-commit), revokes, sends LeaveGroup. The
    /// assignment is empty afterwards.
    pub async fn unsubscribe(&mut self) -> Result<(), Error> {
        if self.subscription.is_none() {
            return Ok(());
        }
        self.revoke_all().await;
        self.subscription = None;
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        self.group_client()?
            .leave("the consumer unsubscribed")
            .await
    }

    /// Finishes with the group: waits for asynchronous commits, commits (with auto-commit)
    /// and leaves. The consumer can be used again afterwards, as a new member.
    pub async fn close(&mut self) -> Result<(), Error> {
        if let Some(previous) = self.last_async_commit.take() {
            let _ = previous.await;
        }
        if self.subscription.is_some() {
            return self.unsubscribe().await;
        }
        if self.group.is_some() && self.config.enable_auto_commit {
            return self.commit().await;
        }
        Ok(())
    }

    /// Commits the current position of every assigned partition and waits for the answer.
    pub async fn commit(&mut self) -> Result<(), Error> {
        let offsets = self.positions();
        self.commit_map(offsets).await
    }

    /// Commits `offsets` (per partition, the offset of the next record to read).
    pub async fn commit_offsets(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<(), Error> {
        if let Some((tp, offset)) = offsets.iter().find(|(_, &o)| o < 0) {
            return Err(Error::Config(format!(
                "cannot commit offset {offset} of {tp}"
            )));
        }
        let offsets = offsets.iter().map(|(tp, &o)| (tp.clone(), o)).collect();
        self.commit_map(offsets).await
    }

    async fn commit_map(&mut self, offsets: BTreeMap<TopicPartition, i64>) -> Result<(), Error> {
        let group = self.group_client()?.clone();
        if let Some(previous) = self.last_async_commit.take() {
            let _ = previous.await;
        }
        group.commit(&offsets, self.subscription.is_some()).await
    }

    /// Starts committing the current positions without waiting; commits still land in the
    /// order they were made. Must be called inside a tokio runtime.
    pub fn commit_async(&mut self) -> Result<PendingCommit, Error> {
        let offsets = self.positions();
        self.commit_map_async(offsets)
    }

    /// Starts committing `offsets` (per partition, the offset of the next record to read)
    /// without waiting, like [`Consumer::commit_async`]. Must be called inside a tokio runtime.
    pub fn commit_offsets_async(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<PendingCommit, Error> {
        if let Some((tp, offset)) = offsets.iter().find(|(_, &o)| o < 0) {
            return Err(Error::Config(format!(
                "cannot commit offset {offset} of {tp}"
            )));
        }
        let offsets = offsets.iter().map(|(tp, &o)| (tp.clone(), o)).collect();
        self.commit_map_async(offsets)
    }

    fn commit_map_async(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<PendingCommit, Error> {
        let group = self.group_client()?.clone();
        let as_member = self.subscription.is_some();
        let previous = self.last_async_commit.take();
        let (sender, result) = oneshot::channel();
        self.last_async_commit = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let _ = sender.send(group.commit(&offsets, as_member).await);
        }));
        Ok(PendingCommit { result })
    }

    /// The committed offset of each of `partitions` in the group; `None` where none is.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<i64>>, Error> {
        self.group_client()?.committed(partitions).await
    }

    /// Whether rebalances are incremental: every offered assignor is cooperative (a mix
    /// falls back to eager, as in the Java client, so members can upgrade one at a time).
    fn cooperative(&self) -> bool {
        let assignors = &self.config.partition_assignment_strategy;
        assignors.iter().all(|a| a.is_cooperative())
    }

    fn listener(&mut self) -> Option<&mut Box<dyn RebalanceListener>> {
        let listener = self.subscription.as_mut()?.listener.as_mut()?;
        // A callback that panicked poisoned nothing we rely on: take the value anyway.
        Some(listener.get_mut().unwrap_or_else(|e| e.into_inner()))
    }

    fn group_client(&self) -> Result<&GroupClient, Error> {
        self.group
            .as_ref()
            .ok_or_else(|| Error::Config("consumer groups and commits need group.id".into()))
    }

    /// The position of every assigned partition that has one (what `commit` would commit),
    /// without resetting the others.
    pub fn positions(&self) -> BTreeMap<TopicPartition, i64> {
        self.assignment
            .iter()
            .filter_map(|(tp, state)| state.position().map(|p| (tp.clone(), p)))
            .collect()
    }

    /// Rejoins the group if subscribed and a (re)join is due; called at every poll round.
    pub(super) async fn ensure_group(&mut self) -> Result<(), Error> {
        let (Some(group), Some(subscription)) = (&self.group, &self.subscription) else {
            return Ok(());
        };
        group.on_poll();
        if !group.needs_join() {
            return Ok(());
        }
        let group = group.clone();
        let topics = subscription.topics.clone();
        let owned = if self.cooperative() {
            // Positions of everything owned are committed first, as before an eager join.
            if self.config.enable_auto_commit {
                let _ = self.commit().await;
            }
            self.assignment()
        } else {
            self.revoke_all().await;
            Vec::new()
        };
        let partitions = group.join(&topics, &owned, &self.network).await?;
        let revoked: Vec<TopicPartition> = owned
            .iter()
            .filter(|tp| !partitions.contains(tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| !owned.contains(tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            // KIP-429: give up what moves, then rejoin so the group can hand it over.
            for tp in &revoked {
                self.assignment.remove(tp);
            }
            if let Some(listener) = self.listener() {
                listener.on_partitions_revoked(&revoked);
            }
            group.request_rejoin();
        }
        for tp in &added {
            self.assignment
                .insert(tp.clone(), PartitionState::default());
        }
        if let Err(err) = self.restore_positions(&group, &added).await {
            // Without committed offsets the partitions would restart by policy: rejoin.
            for tp in &added {
                self.assignment.remove(tp);
            }
            group.request_rejoin();
            return Err(err);
        }
        if self.heartbeat.as_ref().is_none_or(|h| h.is_finished()) {
            self.heartbeat = Some(group.spawn_heartbeat());
        }
        self.next_auto_commit =
            Instant::now() + Duration::from_millis(self.config.auto_commit_interval_ms);
        assert_eq!(
            self.assignment(),
            partitions,
            "kept plus added is the assignment"
        );
        if let Some(listener) = self.listener() {
            listener.on_partitions_assigned(&added);
        }
        Ok(())
    }

    /// Positions of newly assigned partitions from the group's committed offsets; the rest
    /// are reset by `auto_offset_reset` at the next fetch.
    async fn restore_positions(
        &mut self,
        group: &GroupClient,
        partitions: &[TopicPartition],
    ) -> Result<(), Error> {
        if partitions.is_empty() {
            return Ok(());
        }
        let committed = group.committed(partitions).await?;
        for (tp, offset) in committed {
            if let (Some(state), Some(offset)) = (self.assignment.get_mut(&tp), offset) {
                *state = PartitionState {
                    next_fetch: Some(offset),
                    ..PartitionState::default()
                };
            }
        }
        Ok(())
    }

    /// Gives up every assigned partition: commits positions with auto-commit (failures are
    /// ignored: the member may already be out of the generation), then `on_partitions_revoked`.
    async fn revoke_all(&mut self) {
        if self.assignment.is_empty() {
            return;
        }
        if self.config.enable_auto_commit {
            let _ = self.commit().await;
        }
        let revoked = self.assignment();
        self.assignment.clear();
        if let Some(listener) = self.listener() {
            listener.on_partitions_revoked(&revoked);
        }
    }

    /// Starts an asynchronous commit of the positions when auto-commit is due.
    pub(super) fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || self.group.is_none() || self.assignment.is_empty() {
            return;
        }
        let member = self.group.as_ref().is_some_and(|g| !g.needs_join());
        if self.subscription.is_some() && !member {
            return;
        }
        let now = Instant::now();
        if now < self.next_auto_commit {
            return;
        }
        self.next_auto_commit = now + Duration::from_millis(self.config.auto_commit_interval_ms);
        // The outcome is not awaited: a failed automatic commit is retried at the next one.
        let _ = self.commit_async();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
    }
}
