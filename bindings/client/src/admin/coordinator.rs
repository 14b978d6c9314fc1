//! Admin calls that go to a coordinator — a group's (`admin/groups.rs`) or a transactional
//! id's (`admin/transactions.rs`): found with FindCoordinator (`group::find_coordinator_of`,
//! the lookup group members use too) and found again when the answer or the connection says
//! it moved or is still loading.

use std::time::Duration;

use brook_core::ErrorCode;
use kafka_protocol::protocol::Request;

use super::Admin;
use crate::error::Error;
use crate::group::{find_coordinator_of, Coordinator, CoordinatorType};

/// How many times a coordinator call looks for the coordinator again before giving up.
pub(super) const COORDINATOR_ATTEMPTS_MAX: u32 = 10;
/// The pause before asking again after a coordinator error.
pub(super) const COORDINATOR_BACKOFF: Duration = Duration::from_millis(100);

impl Admin {
    /// Sends `build(version)` to the coordinator of `key` (a group or transactional id, as
    /// `kind` says), finding it first and again after an answer or a failure that says it
    /// moved or is still loading. Returns the coordinator that answered with its answer.
    pub(super) async fn ask_coordinator<R: Request>(
        &self,
        kind: CoordinatorType,
        key: &str,
        versions: (i16, i16),
        build: impl Fn(i16) -> R,
    ) -> Result<(Coordinator, R::Response), Error>
    where
        R::Response: CoordinatorAnswer,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match find_coordinator_of(&self.network, kind, key).await {
                Ok(coordinator) => self
                    .network
                    .call(&coordinator.addr, versions, Duration::ZERO, &build)
                    .await
                    .map(|response| (coordinator, response)),
                Err(err) => Err(err),
            };
            let err = match result {
                Ok((coordinator, response)) => match response.coordinator_error() {
                    Some(code) => {
                        Error::kafka(code, format!("coordinator of {} {key}", kind.noun()))
                    }
                    None => return Ok((coordinator, response)),
                },
                Err(err) => err,
            };
            let moved = is_coordinator_error(err.code().code())
                || matches!(err, Error::Connection { .. } | Error::Timeout(_));
            if !moved || attempt >= COORDINATOR_ATTEMPTS_MAX {
                return Err(err);
            }
            tokio::time::sleep(COORDINATOR_BACKOFF).await;
        }
    }
}

/// A response that may say "ask the coordinator again": its first coordinator error code
/// (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS), if any.
pub(crate) trait CoordinatorAnswer {
    /// The code of the first such error in the answer.
    fn coordinator_error(&self) -> Option<i16>;
}

/// Whether `code` says the coordinator moved, is not there yet or is still loading.
pub(super) fn is_coordinator_error(code: i16) -> bool {
    matches!(
        ErrorCode::from_code(code),
        ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::CoordinatorLoadInProgress
    )
}

/// The first of `codes` that is a coordinator error.
pub(super) fn first_coordinator_error(codes: impl IntoIterator<Item = i16>) -> Option<i16> {
    codes.into_iter().find(|&code| is_coordinator_error(code))
}
