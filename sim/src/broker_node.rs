//! A simulated broker process: the core `Broker` over a [`SimDisk`], behind a madsim TCP
//! listener, answering Kafka frames exactly as `brook server` does except that record bytes
//! are copied out of the simulated disk (there is no `sendfile` here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use brook_core::broker::{Broker, BrokerConfig, ParkedId, Reply};
use brook_core::protocol::{
    decode_request, encode_fetch_response, encode_response_for, frame_len, FetchResponseData, Part,
};
use brook_core::storage::Storage;
use brook_core::Millis;
use bytes::BytesMut;
use kafka_protocol::messages::ResponseKind;
use madsim::net::{TcpListener, TcpStream};
use madsim::rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::disk::SimDisk;
use crate::trace::Trace;

/// The port every simulated broker listens on.
pub const BROKER_PORT: u16 = 9092;
/// The largest request frame a simulated broker accepts.
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

/// A parked request's answer once the broker completes it.
enum Completed {
    /// A long-poll fetch.
    Fetch(FetchResponseData),
    /// A JoinGroup or SyncGroup waiting for its rebalance.
    Response(Box<ResponseKind>),
}

/// The broker and the connections waiting on its parked requests.
struct State {
    broker: Broker<SimDisk>,
    waiters: HashMap<ParkedId, oneshot::Sender<Completed>>,
}

impl State {
    /// Hands every parked request the broker completed to the connection waiting for it.
    fn deliver_completed(&mut self) {
        let fetches = self.broker.poll_completed_fetches().into_iter();
        let fetches = fetches.map(|(id, data)| (id, Completed::Fetch(data)));
        let responses = self.broker.poll_completed_responses().into_iter();
        let responses = responses.map(|(id, r)| (id, Completed::Response(Box::new(r))));
        for (id, completed) in fetches.chain(responses).collect::<Vec<_>>() {
            if let Some(waiter) = self.waiters.remove(&id) {
                let _ = waiter.send(completed);
            }
        }
    }
}

#[derive(Clone)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().expect("broker lock")
    }
}

/// Runs one incarnation of a broker until the node is killed. Of the Produce responses,
/// `lost_per_mille` in a thousand are lost with their connection after the request was
/// handled (a reset at the worst moment), so clients retry batches the broker already wrote.
pub async fn run_broker(disk: SimDisk, config: BrokerConfig, trace: Trace, lost_per_mille: u32) {
    let broker = match Broker::open(disk, config, now()) {
        Ok(broker) => broker,
        Err(err) => {
            trace.record(format!("{} broker: cannot open: {err}", now().0));
            return;
        }
    };
    trace.record(format!(
        "{} broker: open, topics {:?}",
        now().0,
        broker.topic_names()
    ));
    let shared = Shared(Arc::new(Mutex::new(State {
        broker,
        waiters: HashMap::new(),
    })));
    let listener = TcpListener::bind(("0.0.0.0", BROKER_PORT))
        .await
        .expect("bind broker port");
    let ticker = shared.clone();
    madsim::task::spawn(async move {
        loop {
            madsim::time::sleep(Duration::from_millis(100)).await;
            let mut state = ticker.lock();
            state.broker.handle_tick(now());
            state.deliver_completed();
        }
    });
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        madsim::task::spawn(async move {
            let _ = serve_connection(stream, shared, lost_per_mille).await;
        });
    }
}

/// Reads the next request frame from a client connection and decodes it; `None` when the
/// connection closed or sent a frame that is too large or does not decode (the connection
/// is then dropped, as the server does).
pub async fn next_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> std::io::Result<Option<brook_core::protocol::Request>> {
    let len = loop {
        match frame_len(buf, REQUEST_BYTES_MAX) {
            Ok(Some(len)) => break len,
            Ok(None) => {}
            Err(_) => return Ok(None),
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    };
    let mut frame = buf.split_to(4 + len);
    let _ = frame.split_to(4);
    Ok(decode_request(frame.freeze()).ok())
}

async fn serve_connection(
    mut stream: TcpStream,
    shared: Shared,
    lost_per_mille: u32,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let Some(request) = next_request(&mut stream, &mut buf).await? else {
            return Ok(());
        };
        let (api, version, correlation_id) =
            (request.api_key, request.api_version, request.correlation_id);
        let waiter = {
            let mut state = shared.lock();
            let reply = state.broker.handle_request(now(), request);
            let outcome = match reply {
                Reply::Response(response) => {
                    match encode_response_for(api, version, correlation_id, &response) {
                        Ok(bytes) => Ok(bytes.to_vec()),
                        Err(_) => return Ok(()),
                    }
                }
                Reply::Fetch(data) => {
                    let parts = encode_fetch_response(version, correlation_id, &data);
                    Ok(flatten(&state.broker, &parts)?)
                }
                Reply::Parked(id) => {
                    let (sender, receiver) = oneshot::channel();
                    state.waiters.insert(id, sender);
                    Err(receiver)
                }
                Reply::None => Ok(Vec::new()),
            };
            state.deliver_completed();
            outcome
        };
        if api == kafka_protocol::messages::ApiKey::Produce
            && lost_per_mille > 0
            && madsim::rand::thread_rng().gen_range(0..1000) < lost_per_mille
        {
            return Ok(()); // the connection drops with the response
        }
        let bytes = match waiter {
            Ok(bytes) if bytes.is_empty() => continue,
            Ok(bytes) => bytes,
            Err(receiver) => {
                let Ok(completed) = receiver.await else {
                    return Ok(());
                };
                let state = shared.lock();
                match completed {
                    Completed::Fetch(data) => {
                        let parts = encode_fetch_response(version, correlation_id, &data);
                        flatten(&state.broker, &parts)?
                    }
                    Completed::Response(response) => {
                        match encode_response_for(api, version, correlation_id, &response) {
                            Ok(bytes) => bytes.to_vec(),
                            Err(_) => return Ok(()),
                        }
                    }
                }
            }
        };
        stream.write_all(&bytes).await?;
        stream.flush().await?;
    }
}

/// Builds the response bytes, reading record ranges from the simulated disk.
fn flatten(broker: &Broker<SimDisk>, parts: &[Part]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Bytes(bytes) => out.extend_from_slice(bytes),
            Part::File(range) => {
                let (topic, partition) = range.dir.rsplit_once('-').expect("topic-partition");
                let partition: i32 = partition.parse().expect("partition number");
                let storage = broker
                    .partition_storage(topic, partition)
                    .ok_or_else(|| std::io::Error::other("partition vanished"))?;
                let start = out.len();
                out.resize(start + range.length as usize, 0);
                storage
                    .read_at(&range.file, range.position, &mut out[start..])
                    .map_err(std::io::Error::other)?;
            }
        }
    }
    Ok(out)
}
