//! A small blocking Kafka client: one TCP connection, size-prefixed frames, correlation ids
//! and versions negotiated from ApiVersions.
//!
//! **API boundary:** this module knows frames, headers and versions, never topics; the
//! console tools build the request bodies and read the answers. One request is in flight at
//! a time, so a response always belongs to the request just sent (checked by its id).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// The client id sent in every request header.
pub const CLIENT_ID: &str = "brook-console";
/// How long to wait to connect, and for any one response, before giving up.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// The largest response frame accepted; a bigger size prefix means a broken stream.
pub const RESPONSE_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Kafka's `UNSUPPORTED_VERSION` error code, answered to a too-new ApiVersions request.
const UNSUPPORTED_VERSION: i16 = 35;

/// Why a request could not be answered. Broker error codes inside a decoded response are not
/// client errors; the tools read them from the response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The bootstrap address does not resolve, or nothing accepts connections there.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address as given.
        addr: String,
        /// What the resolver or the socket reported.
        reason: String,
    },
    /// Reading or writing the connection failed (closed by the broker, timed out, reset).
    #[error("connection to {addr} failed during {api:?}: {source}")]
    Io {
        /// The broker's address.
        addr: String,
        /// The request in progress.
        api: ApiKey,
        /// The socket error.
        source: std::io::Error,
    },
    /// The request could not be encoded in the negotiated version (a bug in the tool).
    #[error("cannot encode a {api:?} v{version} request: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// What the encoder reported.
        reason: String,
    },
    /// The response does not decode, is oversized, or answers another request.
    #[error("malformed {api:?} v{version} response: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker serves no version of the API that this client also speaks.
    #[error("the broker does not support {api:?} v{min}..=v{max}")]
    Unsupported {
        /// The API.
        api: ApiKey,
        /// The oldest version this client speaks.
        min: i16,
        /// The newest version this client speaks.
        max: i16,
    },
}

/// One connection to a broker, with the API versions the broker advertised.
pub struct Client {
    addr: String,
    stream: TcpStream,
    next_correlation_id: i32,
    /// API key → (min, max) version the broker serves.
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl Client {
    /// Connects to `addr` (HOST:PORT) and asks which API versions the broker serves.
    pub fn connect(addr: &str) -> Result<Client, ClientError> {
        let stream = open_stream(addr)?;
        let mut client = Client {
            addr: addr.to_string(),
            stream,
            next_correlation_id: 1,
            broker_versions: HashMap::new(),
        };
        client.negotiate()?;
        Ok(client)
    }

    /// The address this client is connected to, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the broker advertised any version of `api`.
    pub fn serves(&self, api: ApiKey) -> bool {
        self.broker_versions.contains_key(&(api as i16))
    }

    /// The newest version of `R` that the broker, kafka-protocol and the caller (who speaks
    /// `min..=max`) all support.
    pub fn version<R: Request>(&self, min: i16, max: i16) -> Result<i16, ClientError> {
        let api = api_key::<R>();
        let unsupported = ClientError::Unsupported { api, min, max };
        let Some(&(broker_min, broker_max)) = self.broker_versions.get(&R::KEY) else {
            return Err(unsupported);
        };
        let low = min.max(broker_min).max(R::VERSIONS.min);
        let high = max.min(broker_max).min(R::VERSIONS.max);
        if low > high {
            return Err(unsupported);
        }
        Ok(high)
    }

    /// Sends `request` in `version` and waits for its response.
    pub fn call<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let api = api_key::<R>();
        let correlation_id = self.send(version, request)?;
        let mut body = self.receive(api, version, correlation_id)?;
        R::Response::decode(&mut body, version).map_err(|err| ClientError::Malformed {
            api,
            version,
            reason: err.to_string(),
        })
    }

    /// Sends `request` without waiting: for requests the broker does not answer (acks=0).
    pub fn send_only<R: Request>(&mut self, version: i16, request: &R) -> Result<(), ClientError> {
        self.send(version, request).map(|_| ())
    }

    /// Asks for ApiVersions v3, falling back to v0 if the broker answers UNSUPPORTED_VERSION
    /// (KIP-511: that answer is always encoded in v0).
    fn negotiate(&mut self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let api = ApiKey::ApiVersions;
        let mut version = 3;
        let correlation_id = self.send(version, &request)?;
        let mut body = self.receive(api, version, correlation_id)?;
        if body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == UNSUPPORTED_VERSION {
            version = 0;
        }
        let response = ApiVersionsResponse::decode(&mut body, version).map_err(|err| {
            ClientError::Malformed {
                api,
                version,
                reason: err.to_string(),
            }
        })?;
        if response.error_code != 0 && response.error_code != UNSUPPORTED_VERSION {
            return Err(ClientError::Malformed {
                api,
                version,
                reason: format!("error code {}", response.error_code),
            });
        }
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|key| (key.api_key, (key.min_version, key.max_version)))
            .collect();
        Ok(())
    }

    /// Encodes and writes one request frame; returns its correlation id.
    fn send<R: Request>(&mut self, version: i16, request: &R) -> Result<i32, ClientError> {
        let api = api_key::<R>();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0); // size, patched below
        let encoded = header
            .encode(&mut frame, api.request_header_version(version))
            .and_then(|()| request.encode(&mut frame, version));
        encoded.map_err(|err| ClientError::Encode {
            api,
            version,
            reason: err.to_string(),
        })?;
        let size = i32::try_from(frame.len() - 4).map_err(|_| ClientError::Encode {
            api,
            version,
            reason: format!("{} bytes do not fit a frame", frame.len()),
        })?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&frame)
            .map_err(|source| self.io_error(api, source))?;
        Ok(correlation_id)
    }

    /// Reads one response frame and its header; returns the body.
    fn receive(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, ClientError> {
        let malformed = |reason: String| ClientError::Malformed {
            api,
            version,
            reason,
        };
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .map_err(|source| self.io_error(api, source))?;
        let size = i32::from_be_bytes(prefix);
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| malformed(format!("frame size {size} is out of range")))?;
        let mut frame = vec![0u8; size];
        self.stream
            .read_exact(&mut frame)
            .map_err(|source| self.io_error(api, source))?;
        let mut body = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|err| malformed(err.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(malformed(format!(
                "correlation id {} answers no request (expected {correlation_id})",
                header.correlation_id
            )));
        }
        Ok(body)
    }

    fn io_error(&self, api: ApiKey, source: std::io::Error) -> ClientError {
        let source = match source.kind() {
            std::io::ErrorKind::UnexpectedEof => std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the broker closed the connection",
            ),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no response within {REQUEST_TIMEOUT_MS} ms"),
            ),
            _ => source,
        };
        ClientError::Io {
            addr: self.addr.clone(),
            api,
            source,
        }
    }
}

/// The `ApiKey` of a request type.
fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("kafka-protocol request types have known keys")
}

/// Resolves `addr` and connects to the first address that accepts, with timeouts set.
fn open_stream(addr: &str) -> Result<TcpStream, ClientError> {
    let connect_error = |reason: String| ClientError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let addresses: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|err| connect_error(err.to_string()))?
        .collect();
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
    let mut last_error = connect_error("the address resolves to nothing".to_string());
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => {
                let configured = stream
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| stream.set_write_timeout(Some(timeout)))
                    .and_then(|()| stream.set_nodelay(true));
                configured.map_err(|err| connect_error(err.to_string()))?;
                return Ok(stream);
            }
            Err(err) => last_error = connect_error(err.to_string()),
        }
    }
    Err(last_error)
}
