//! A minimal simulated Kafka client connection: requests encoded and responses decoded with
//! the same schemas the broker uses, every call bounded by a simulated timeout.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use madsim::net::TcpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a simulated client waits for any one response.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call failed; every variant means "reconnect and retry".
#[derive(Debug)]
pub enum CallError {
    /// The connection failed or closed.
    Io(std::io::Error),
    /// No answer within [`CALL_TIMEOUT`].
    Timeout,
    /// The answer did not decode.
    Decode(String),
}

/// One connection to a broker.
pub struct Conn {
    stream: TcpStream,
    correlation_id: i32,
    buf: BytesMut,
}

impl Conn {
    /// Connects to `addr`, bounded by the call timeout.
    pub async fn connect(addr: &str) -> Result<Conn, CallError> {
        let connect = TcpStream::connect(addr);
        let stream = match madsim::time::timeout(CALL_TIMEOUT, connect).await {
            Err(_) => return Err(CallError::Timeout),
            Ok(Err(err)) => return Err(CallError::Io(err)),
            Ok(Ok(stream)) => stream,
        };
        Ok(Conn {
            stream,
            correlation_id: 0,
            buf: BytesMut::new(),
        })
    }

    /// Sends a request and waits for its response (`None` body for acks=0 produce).
    pub async fn call<T: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &T,
        expect_response: bool,
    ) -> Result<Option<ResponseKind>, CallError> {
        match madsim::time::timeout(
            CALL_TIMEOUT,
            self.exchange(api, version, body, expect_response),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout),
        }
    }

    async fn exchange<T: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &T,
        expect_response: bool,
    ) -> Result<Option<ResponseKind>, CallError> {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("sim"));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, api.request_header_version(version))
            .map_err(|e| CallError::Decode(e.to_string()))?;
        body.encode(&mut frame, version)
            .map_err(|e| CallError::Decode(e.to_string()))?;
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&frame).await.map_err(CallError::Io)?;
        self.stream.flush().await.map_err(CallError::Io)?;
        if !expect_response {
            return Ok(None);
        }
        let mut response = self.read_frame().await?;
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version))
            .map_err(|e| CallError::Decode(e.to_string()))?;
        if header.correlation_id != self.correlation_id {
            return Err(CallError::Decode("correlation id mismatch".into()));
        }
        let body = ResponseKind::decode(api, &mut response, version)
            .map_err(|e| CallError::Decode(e.to_string()))?;
        Ok(Some(body))
    }

    async fn read_frame(&mut self) -> Result<bytes::Bytes, CallError> {
        loop {
            if self.buf.len() >= 4 {
                let size = (&self.buf[..4]).get_i32();
                if size < 0 {
                    return Err(CallError::Decode("negative frame size".into()));
                }
                if self.buf.len() >= 4 + size as usize {
                    let mut frame = self.buf.split_to(4 + size as usize);
                    let _ = frame.split_to(4);
                    return Ok(frame.freeze());
                }
            }
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(CallError::Io)?;
            if read == 0 {
                return Err(CallError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}
