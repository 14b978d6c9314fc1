//! One async TCP connection to one broker: size-prefixed frames, request headers v1/v2,
//! correlation ids and the API versions negotiated with ApiVersions.
//!
//! **API boundary:** this module knows frames, headers and versions, never topics. One
//! request is in flight at a time (the caller holds `&mut Connection`), so a response always
//! answers the request just sent, which the correlation id confirms.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Error;

/// The largest response frame accepted; a bigger size prefix means a broken stream.
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// The newest ApiVersions version this client asks with (KIP-511 falls back to v0).
const API_VERSIONS_VERSION_MAX: i16 = 3;
/// Kafka's UNSUPPORTED_VERSION code, answered (in v0) to a too-new ApiVersions request.
const UNSUPPORTED_VERSION: i16 = 35;

/// A negotiated connection to one broker.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    client_id: String,
    stream: TcpStream,
    next_correlation_id: i32,
    /// API key → (min, max) version the broker serves.
    broker_versions: HashMap<i16, (i16, i16)>,
    /// Correlation ids of the requests sent whose responses are not read yet, oldest first:
    /// more than one only when a call was cancelled (its future dropped) after sending, and
    /// the responses to such calls are skipped.
    unanswered: std::collections::VecDeque<i32>,
    /// Bytes read but not yet taken as a frame: reading into it is cancel-safe, so a call
    /// dropped halfway through a response leaves the stream usable.
    read_buf: BytesMut,
}

impl Connection {
    /// Connects to `addr` (HOST:PORT) within `timeout` and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Self, Error> {
        let connect_error = |reason: String| Error::Connection {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(format!("no connection within {timeout:?}")))?
            .map_err(|err| connect_error(err.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|err| connect_error(err.to_string()))?;
        let mut connection = Connection {
            addr: addr.to_string(),
            client_id: client_id.to_string(),
            stream,
            next_correlation_id: 1,
            broker_versions: HashMap::new(),
            unanswered: Default::default(),
            read_buf: BytesMut::new(),
        };
        tokio::time::timeout(timeout, connection.negotiate())
            .await
            .map_err(|_| connect_error(format!("no ApiVersions answer within {timeout:?}")))??;
        Ok(connection)
    }

    /// The newest version of `R` that the broker, kafka-protocol and the caller (who speaks
    /// `min..=max`) all support.
    pub fn version<R: Request>(&self, min: i16, max: i16) -> Result<i16, Error> {
        let unsupported = || Error::Unsupported(format!("{:?} v{min}..=v{max}", api_key::<R>()));
        let &(broker_min, broker_max) =
            self.broker_versions.get(&R::KEY).ok_or_else(unsupported)?;
        let low = min.max(broker_min).max(R::VERSIONS.min);
        let high = max.min(broker_max).min(R::VERSIONS.max);
        if low > high {
            return Err(unsupported());
        }
        Ok(high)
    }

    /// Sends `request` in `version` and waits for its response.
    pub async fn call<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, Error> {
        let api = api_key::<R>();
        let correlation_id = self.send(version, request).await?;
        let mut body = self.receive(api, version, correlation_id).await?;
        R::Response::decode(&mut body, version)
            .map_err(|err| Error::Protocol(format!("{api:?} v{version} response: {err}")))
    }

    /// Sends `request` without waiting for an answer (Produce with acks=0).
    pub async fn send_only<R: Request>(&mut self, version: i16, request: &R) -> Result<(), Error> {
        let correlation_id = self.send(version, request).await?;
        self.unanswered.retain(|id| *id != correlation_id);
        Ok(())
    }

    /// Asks for ApiVersions v3, falling back to v0 when the broker answers
    /// UNSUPPORTED_VERSION (KIP-511: that answer is always encoded in v0).
    async fn negotiate(&mut self) -> Result<(), Error> {
        let api = ApiKey::ApiVersions;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("brook-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = API_VERSIONS_VERSION_MAX;
        let correlation_id = self.send(version, &request).await?;
        let mut body = self.receive(api, version, correlation_id).await?;
        if body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == UNSUPPORTED_VERSION {
            // Answered in v0; ask again in v0 so the list is the one meant for v0 clients.
            version = 0;
            let correlation_id = self.send(version, &ApiVersionsRequest::default()).await?;
            body = self.receive(api, version, correlation_id).await?;
        }
        let response = ApiVersionsResponse::decode(&mut body, version)
            .map_err(|err| Error::Protocol(format!("ApiVersions v{version} response: {err}")))?;
        crate::error::check(response.error_code, None, "ApiVersions")?;
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|key| (key.api_key, (key.min_version, key.max_version)))
            .collect();
        Ok(())
    }

    /// Encodes and writes one request frame; returns its correlation id.
    async fn send<R: Request>(&mut self, version: i16, request: &R) -> Result<i32, Error> {
        let api = api_key::<R>();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        self.unanswered.push_back(correlation_id);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0); // the size, patched below
        header
            .encode(&mut frame, api.request_header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|err| Error::Protocol(format!("cannot encode {api:?} v{version}: {err}")))?;
        let size = i32::try_from(frame.len() - 4)
            .map_err(|_| Error::Protocol(format!("{} bytes do not fit a frame", frame.len())))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&frame)
            .await
            .map_err(|err| self.io_error(err))?;
        Ok(correlation_id)
    }

    /// Reads the response to `correlation_id` and its header, skipping the responses to
    /// earlier calls that were cancelled; returns the body.
    async fn receive(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, Error> {
        loop {
            let frame = self.read_frame().await?;
            let answers = (frame.len() >= 4)
                .then(|| i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]));
            let oldest = self.unanswered.front().copied();
            if answers.is_some() && answers == oldest && oldest != Some(correlation_id) {
                self.unanswered.pop_front(); // the answer to a cancelled call
                continue;
            }
            self.unanswered.retain(|id| *id != correlation_id);
            let mut body = Bytes::from(frame);
            let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
                .map_err(|err| Error::Protocol(format!("{api:?} response header: {err}")))?;
            if header.correlation_id != correlation_id {
                return Err(Error::Protocol(format!(
                    "correlation id {} answers no request (expected {correlation_id})",
                    header.correlation_id
                )));
            }
            return Ok(body);
        }
    }

    /// Reads one whole response frame (without its size prefix).
    async fn read_frame(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            if self.read_buf.len() >= 4 {
                let size = i32::from_be_bytes([
                    self.read_buf[0],
                    self.read_buf[1],
                    self.read_buf[2],
                    self.read_buf[3],
                ]);
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&size| size <= RESPONSE_BYTES_MAX)
                    .ok_or_else(|| {
                        Error::Protocol(format!("response frame size {size} out of range"))
                    })?;
                if self.read_buf.len() >= 4 + size {
                    let mut frame = self.read_buf.split_to(4 + size);
                    return Ok(frame.split_off(4).to_vec());
                }
                self.read_buf.reserve(4 + size - self.read_buf.len());
            } else {
                self.read_buf.reserve(4096);
            }
            let read = self.stream.read_buf(&mut self.read_buf).await;
            match read {
                Ok(0) => {
                    let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                    return Err(self.io_error(eof));
                }
                Ok(_) => {}
                Err(err) => return Err(self.io_error(err)),
            }
        }
    }

    fn io_error(&self, err: std::io::Error) -> Error {
        let reason = match err.kind() {
            std::io::ErrorKind::UnexpectedEof => "the broker closed the connection".to_string(),
            _ => err.to_string(),
        };
        Error::Connection {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// The `ApiKey` of a request type.
pub(crate) fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("kafka-protocol request types have known keys")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
    use tokio::net::TcpListener;

    /// Reads one request frame; returns (api key, version, correlation id).
    async fn read_request(stream: &mut TcpStream) -> (i16, i16, i32) {
        let size = stream.read_i32().await.expect("size") as usize;
        let mut frame = vec![0u8; size];
        stream.read_exact(&mut frame).await.expect("frame");
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let api = ApiKey::try_from(key).expect("known api");
        let mut body = Bytes::from(frame);
        let header = RequestHeader::decode(&mut body, api.request_header_version(version))
            .expect("request header");
        assert_eq!(header.client_id.as_deref(), Some("test-client"));
        (key, version, header.correlation_id)
    }

    /// Writes a response frame with header version `header_version`.
    async fn write_response<R: Encodable>(
        stream: &mut TcpStream,
        correlation_id: i32,
        header_version: i16,
        body: &R,
        version: i16,
    ) {
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut frame, header_version)
            .expect("response header");
        body.encode(&mut frame, version).expect("response body");
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&frame).await.expect("write");
    }

    /// A broker that knows only ApiVersions v0 (KIP-511: it answers a newer request with
    /// UNSUPPORTED_VERSION in v0) and Metadata v0..=1.
    async fn old_broker(listener: TcpListener, wrong_correlation: bool) {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let (key, version, id) = read_request(&mut stream).await;
        assert_eq!((key, version), (ApiKey::ApiVersions as i16, 3));
        let refusal = ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION);
        write_response(&mut stream, id, 0, &refusal, 0).await;
        let (key, version, id) = read_request(&mut stream).await;
        assert_eq!((key, version), (ApiKey::ApiVersions as i16, 0));
        let versions = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_max_version(0),
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_max_version(1),
        ]);
        write_response(&mut stream, id, 0, &versions, 0).await;
        let (key, version, id) = read_request(&mut stream).await;
        assert_eq!((key, version), (ApiKey::Metadata as i16, 1));
        let id = if wrong_correlation { id + 1 } else { id };
        write_response(&mut stream, id, 0, &MetadataResponse::default(), 1).await;
    }

    #[tokio::test]
    async fn connection_falls_back_to_api_versions_v0_and_picks_common_versions() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let broker = tokio::spawn(old_broker(listener, false));
        let timeout = Duration::from_secs(5);
        let mut connection = Connection::connect(&addr, "test-client", timeout)
            .await
            .expect("connect");
        assert_eq!(connection.version::<MetadataRequest>(0, 12).expect("v"), 1);
        assert!(matches!(
            connection.version::<MetadataRequest>(4, 12),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            connection.version::<kafka_protocol::messages::FetchRequest>(4, 12),
            Err(Error::Unsupported(_))
        ));
        let request = MetadataRequest::default().with_topics(None);
        connection.call(1, &request).await.expect("metadata");
        broker.await.expect("broker");
    }

    #[tokio::test]
    async fn a_response_to_another_request_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let broker = tokio::spawn(old_broker(listener, true));
        let timeout = Duration::from_secs(5);
        let mut connection = Connection::connect(&addr, "test-client", timeout)
            .await
            .expect("connect");
        let request = MetadataRequest::default().with_topics(None);
        let err = connection.call(1, &request).await.expect_err("wrong id");
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        broker.await.expect("broker");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_retriable_connection_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = Connection::connect(&addr, "c", Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::Connection { .. }) && err.is_retriable(),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_answer_to_a_cancelled_call_is_skipped_by_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let broker = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let (_, _, id) = read_request(&mut stream).await;
            let versions = ApiVersionsResponse::default().with_api_keys(vec![
                ApiVersion::default()
                    .with_api_key(ApiKey::ApiVersions as i16)
                    .with_max_version(3),
                ApiVersion::default()
                    .with_api_key(ApiKey::Metadata as i16)
                    .with_max_version(1),
            ]);
            write_response(&mut stream, id, 0, &versions, 3).await;
            let (_, _, first) = read_request(&mut stream).await;
            // Answered late, half now and half later, after the caller gave up on it.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let answer = MetadataResponse::default().with_controller_id(BrokerId(1));
            write_response(&mut stream, first, 0, &answer, 1).await;
            let (_, _, second) = read_request(&mut stream).await;
            let answer = MetadataResponse::default().with_controller_id(BrokerId(2));
            write_response(&mut stream, second, 0, &answer, 1).await;
        });
        let timeout = Duration::from_secs(5);
        let mut connection = Connection::connect(&addr, "test-client", timeout)
            .await
            .expect("connect");
        let request = MetadataRequest::default().with_topics(None);
        let cancelled =
            tokio::time::timeout(Duration::from_millis(50), connection.call(1, &request)).await;
        assert!(cancelled.is_err(), "the first call was cut short");
        let response = connection.call(1, &request).await.expect("second call");
        assert_eq!(
            response.controller_id,
            BrokerId(2),
            "its own answer, not the first"
        );
        broker.await.expect("broker");
    }
}
