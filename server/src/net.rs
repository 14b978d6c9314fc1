//! The network shell: a tokio listener, one task per connection, Kafka frames in and out,
//! record bytes sent from segment files with `sendfile(2)`.
//!
//! A connection task reads a frame, hands it to the driver thread ([`crate::node`]) and
//! writes the answer it gets back; requests on a connection are answered in order because
//! the task sends the next frame only after the answer to the last. A request that must wait
//! (a long-poll fetch, a group join, an acks=all produce) simply takes longer to be answered.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use brook_core::broker::{RequestContext, StorageProvider};
use brook_core::driver::ConnectionId;
use brook_core::protocol::fetch_types::FileRange;
use brook_core::protocol::{frame_len, Part, ProtocolError};
use brook_core::storage::StorageError;
use brook_core::Millis;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc as async_mpsc, watch, Semaphore};

use crate::node::{Answer, Input};
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

/// What every connection task shares.
pub struct Shared {
    inputs: mpsc::Sender<Input>,
    data_dir: DataDir,
    request_bytes_max: usize,
    /// Whether record bytes go out with sendfile(2) or through a user-space buffer.
    sendfile: bool,
    next_connection: AtomicU64,
}

impl Shared {
    /// The connection tasks' view of a driver thread taking `inputs`.
    pub fn new(
        inputs: mpsc::Sender<Input>,
        data_dir: DataDir,
        request_bytes_max: usize,
        sendfile: bool,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            inputs,
            data_dir,
            request_bytes_max,
            sendfile,
            next_connection: AtomicU64::new(1),
        })
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
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
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
    #[error("{0}")]
    Closed(String),
}

async fn handle_connection(
    mut socket: TcpStream,
    shared: &Shared,
    context: &RequestContext,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let connection = ConnectionId(shared.next_connection.fetch_add(1, Ordering::Relaxed));
    let (answers, mut answered) = async_mpsc::unbounded_channel();
    let opened = Input::Open {
        connection,
        answers,
    };
    shared
        .inputs
        .send(opened)
        .map_err(|_| ConnectionError::ShuttingDown)?;
    let result = serve_requests(
        &mut socket,
        connection,
        &mut answered,
        shared,
        context,
        shutdown,
    )
    .await;
    let _ = shared.inputs.send(Input::Closed(connection));
    result
}

async fn serve_requests(
    socket: &mut TcpStream,
    connection: ConnectionId,
    answered: &mut async_mpsc::UnboundedReceiver<Answer>,
    shared: &Shared,
    context: &RequestContext,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let Some(frame) = read_frame(socket, &mut buf, shared.request_bytes_max).await? else {
            return Ok(());
        };
        if *shutdown.borrow() {
            return Err(ConnectionError::ShuttingDown);
        }
        let input = Input::Frame {
            connection,
            context: context.clone(),
            frame: frame.freeze(),
        };
        shared
            .inputs
            .send(input)
            .map_err(|_| ConnectionError::ShuttingDown)?;
        match answered.recv().await {
            Some(Answer::Respond(parts)) => write_parts(socket, shared, &parts).await?,
            Some(Answer::Close(reason)) => return Err(ConnectionError::Closed(reason)),
            None => return Err(ConnectionError::ShuttingDown),
        }
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
