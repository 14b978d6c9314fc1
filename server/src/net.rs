//! The network shell: a tokio listener, one task per connection, Kafka frames in and out,
//! record bytes sent from segment files with `sendfile(2)`.
//!
//! The broker state machine sits behind one mutex; a connection task decodes a request,
//! hands it to the broker, and writes the reply. Requests on a connection are answered in
//! order because the task handles one at a time. A fetch (or a JoinGroup/SyncGroup) that must
//! wait parks in the broker; its task awaits a oneshot that the broker's completions feed.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brook_core::broker::{api_versions, Broker, ParkedId, Reply, RequestContext, StorageProvider};
use brook_core::protocol::fetch_types::FileRange;
use brook_core::protocol::{
    decode_request, encode_fetch_response, encode_response_for, frame_len, Part, ProtocolError,
    Request,
};
use brook_core::storage::StorageError;
use brook_core::{ErrorCode, Millis};
use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};

use crate::storage::FileStorage;

/// Opens partition directories under the data directory as [`FileStorage`]s.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: PathBuf) -> DataDir {
        DataDir { root }
    }

    /// The path of a file in a partition directory.
    pub fn file_path(&self, dir: &str, file: &str) -> PathBuf {
        self.root.join(dir).join(file)
    }
}

impl StorageProvider for DataDir {
    type Storage = FileStorage;

    fn open_dir(&mut self, name: &str) -> Result<FileStorage, StorageError> {
        FileStorage::open(&self.root.join(name))
    }

    fn remove_dir(&mut self, name: &str) -> Result<(), StorageError> {
        match std::fs::remove_dir_all(self.root.join(name)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io {
                op: "remove directory",
                name: name.into(),
                source: err,
            }),
            _ => Ok(()),
        }
    }
}

/// The current wall-clock time for the broker.
pub fn now() -> Millis {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Millis(since_epoch.as_millis() as i64)
}

/// The answer of a parked request: a fetch's records or a group request's response.
enum Completed {
    Fetch(brook_core::protocol::FetchResponseData),
    Response(Box<kafka_protocol::messages::ResponseKind>),
}

/// The broker plus the parked requests' waiting connections.
struct State {
    broker: Option<Broker<DataDir>>,
    waiters: HashMap<ParkedId, oneshot::Sender<Completed>>,
}

/// What every connection task shares.
pub struct Shared {
    state: Mutex<State>,
    data_dir: DataDir,
    request_bytes_max: usize,
    /// Whether record bytes go out with sendfile(2) or through a user-space buffer.
    sendfile: bool,
}

impl Shared {
    /// Wraps an opened broker for the connection tasks.
    pub fn new(
        broker: Broker<DataDir>,
        data_dir: DataDir,
        request_bytes_max: usize,
        sendfile: bool,
    ) -> Arc<Shared> {
        let state = State {
            broker: Some(broker),
            waiters: HashMap::new(),
        };
        Arc::new(Shared {
            state: Mutex::new(state),
            data_dir,
            request_bytes_max,
            sendfile,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; keep serving with the state as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs the broker's timers and hands completed fetches to their connections.
    pub fn tick(&self) {
        let mut state = self.lock();
        if let Some(broker) = state.broker.as_mut() {
            broker.handle_tick(now());
            for error in broker.poll_background_errors() {
                tracing::error!("background work failed: {error}");
            }
        }
        deliver_completed(&mut state);
    }

    /// Takes the broker out for a clean shutdown; later requests find it gone.
    pub fn take_broker(&self) -> Option<Broker<DataDir>> {
        self.lock().broker.take()
    }
}

fn deliver_completed(state: &mut State) {
    let Some(broker) = state.broker.as_mut() else {
        return;
    };
    let fetches = broker.poll_completed_fetches();
    let responses = broker.poll_completed_responses();
    let completed = fetches
        .into_iter()
        .map(|(id, data)| (id, Completed::Fetch(data)))
        .chain(
            responses
                .into_iter()
                .map(|(id, response)| (id, Completed::Response(Box::new(response)))),
        );
    for (id, answer) in completed {
        if let Some(waiter) = state.waiters.remove(&id) {
            let _ = waiter.send(answer);
        }
    }
}

/// Accepts connections until `shutdown` turns true, bounding how many are served at once.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    connections_max: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(connections_max));
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = ticker.tick() => shared.tick(),
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!("accept failed: {err}");
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection refused: {connections_max} connections open");
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    // Kafka shows a member's host as Java prints an address: "/127.0.0.1".
                    let context = RequestContext {
                        client_host: format!("/{}", peer.ip()),
                    };
                    if let Err(err) = handle_connection(socket, &shared, &context, shutdown).await {
                        tracing::debug!(%peer, "connection closed: {err}");
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("broker is shutting down")]
    ShuttingDown,
    #[error("cannot encode the response: {0}")]
    Encode(String),
}

async fn handle_connection(
    mut socket: TcpStream,
    shared: &Shared,
    context: &RequestContext,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let Some(frame) = read_frame(&mut socket, &mut buf, shared.request_bytes_max).await? else {
            return Ok(());
        };
        if *shutdown.borrow() {
            return Err(ConnectionError::ShuttingDown);
        }
        let request = match decode_request(frame.freeze()) {
            Ok(request) => request,
            Err(ProtocolError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => {
                // KIP-511: answer in v0 with the supported range so the client retries.
                let response = api_versions(ErrorCode::UnsupportedVersion);
                let bytes = encode_response_for(ApiKey::ApiVersions, 0, correlation_id, &response)
                    .map_err(ConnectionError::Encode)?;
                socket.write_all(&bytes).await?;
                continue;
            }
            Err(err) => {
                tracing::warn!("closing connection: {err}");
                return Err(err.into());
            }
        };
        respond(&mut socket, shared, context, request).await?;
    }
}

/// Reads one frame (without its size prefix); `None` at a clean end of stream.
async fn read_frame(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    request_bytes_max: usize,
) -> Result<Option<BytesMut>, ConnectionError> {
    loop {
        if let Some(len) = frame_len(buf, request_bytes_max)? {
            let mut frame = buf.split_to(4 + len);
            let _ = frame.split_to(4);
            return Ok(Some(frame));
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        if socket.read_buf(buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

async fn respond(
    socket: &mut TcpStream,
    shared: &Shared,
    context: &RequestContext,
    request: Request,
) -> Result<(), ConnectionError> {
    let (api, version, correlation_id) =
        (request.api_key, request.api_version, request.correlation_id);
    let encode = |response: &ResponseKind| {
        encode_response_for(api, version, correlation_id, response).map_err(|err| {
            tracing::error!("{err}");
            ConnectionError::Encode(err)
        })
    };
    let (reply, waiter) = {
        let mut state = shared.lock();
        let Some(broker) = state.broker.as_mut() else {
            return Err(ConnectionError::ShuttingDown);
        };
        let reply = broker.handle_request_from(now(), context, request);
        let waiter = match &reply {
            Reply::Parked(id) => {
                let (sender, receiver) = oneshot::channel();
                state.waiters.insert(*id, sender);
                Some((*id, receiver))
            }
            _ => None,
        };
        deliver_completed(&mut state);
        (reply, waiter)
    };
    match reply {
        Reply::Response(response) => socket.write_all(&encode(&response)?).await?,
        Reply::None => {}
        Reply::Fetch(data) => {
            write_parts(
                socket,
                shared,
                &encode_fetch_response(version, correlation_id, &data),
            )
            .await?
        }
        Reply::Parked(_) => {
            let (id, receiver) = waiter.expect("a parked request has a waiter");
            let answer = match receiver.await {
                Ok(answer) => answer,
                Err(_) => {
                    if let Some(broker) = shared.lock().broker.as_mut() {
                        broker.cancel_parked(id);
                    }
                    return Err(ConnectionError::ShuttingDown);
                }
            };
            match answer {
                Completed::Fetch(data) => {
                    write_parts(
                        socket,
                        shared,
                        &encode_fetch_response(version, correlation_id, &data),
                    )
                    .await?
                }
                Completed::Response(response) => socket.write_all(&encode(&response)?).await?,
            }
        }
    }
    Ok(())
}

/// Writes an encoded response: bytes as they are, file ranges with `sendfile(2)` (or through
/// a buffer when sendfile is switched off).
async fn write_parts(
    socket: &mut TcpStream,
    shared: &Shared,
    parts: &[Part],
) -> std::io::Result<()> {
    for part in parts {
        match part {
            Part::Bytes(bytes) => socket.write_all(bytes).await?,
            Part::File(range) if shared.sendfile => {
                send_file(socket, &shared.data_dir, range).await?
            }
            Part::File(range) => copy_file(socket, &shared.data_dir, range).await?,
        }
    }
    Ok(())
}

/// Sends a file range through a user-space buffer (positional reads, then writes): the
/// baseline the sendfile path is measured against.
async fn copy_file(
    socket: &mut TcpStream,
    data_dir: &DataDir,
    range: &FileRange,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(data_dir.file_path(&range.dir, &range.file))?;
    let mut buf = vec![0u8; (range.length as usize).min(1 << 20)];
    let mut position = range.position;
    let end = range.position + range.length;
    while position < end {
        let chunk = ((end - position) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..chunk], position)?;
        socket.write_all(&buf[..chunk]).await?;
        position += chunk as u64;
    }
    Ok(())
}

/// Sends a file range to the socket without copying it through user space.
async fn send_file(
    socket: &mut TcpStream,
    data_dir: &DataDir,
    range: &FileRange,
) -> std::io::Result<()> {
    let file = std::fs::File::open(data_dir.file_path(&range.dir, &range.file))?;
    let mut offset = range.position as i64;
    let end = offset + range.length as i64;
    while offset < end {
        socket.writable().await?;
        let remaining = (end - offset) as usize;
        let sent = socket.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile64(
                socket.as_fd(),
                file.as_fd(),
                Some(&mut offset),
                remaining,
            )
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => {
                // The file is shorter than the range: the segment was truncated under us.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment shrank during fetch",
                ));
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
