//! The Kafka wire protocol: frames, request decoding, response encoding and the table of
//! API versions Brook serves.
//!
//! Message schemas come from the `kafka-protocol` crate; the hot paths (record batches in
//! Produce, the Fetch response around record bytes) are Brook's own code (`fetch.rs`).
//!
//! **API boundary:** this module turns bytes into [`Request`]s and responses into bytes; it
//! knows nothing of topics or logs. Parsing half a frame is `Ok(None)`, not an error.

mod fetch;
/// The types of the Fetch response encoder, for drivers that serve file ranges.
pub mod fetch_types {
    pub use super::fetch::FileRange;
}
mod versions;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;

pub use fetch::{
    encode_fetch_response, FetchPartitionData, FetchResponseData, FetchTopicData, Part,
    FETCH_VERSIONS,
};
pub use versions::{supported_versions, SUPPORTED_APIS};

/// Bytes of the size prefix in front of every request and response.
pub const SIZE_PREFIX_LEN: usize = 4;
/// Kafka's default `socket.request.max.bytes`: the largest request frame accepted.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// Why a frame could not become a request.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The size prefix is negative or over `socket.request.max.bytes`; the connection closes.
    #[error("request size {size} is outside 0..={max} bytes")]
    FrameSize {
        /// The size the prefix declared.
        size: i64,
        /// The configured maximum.
        max: usize,
    },
    /// The frame is too short to hold a request header.
    #[error("request frame of {0} bytes is too short for a header")]
    ShortHeader(usize),
    /// The API key is not one Kafka defines; the connection closes.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The API exists but this version is not served. ApiVersions still gets an answer.
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
        /// The correlation id, so an ApiVersions error response can be sent.
        correlation_id: i32,
    },
    /// The header or body does not decode.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// What the decoder reported.
        reason: String,
    },
}

/// A decoded request: its header and body.
#[derive(Debug, Clone)]
pub struct Request {
    /// The API called.
    pub api_key: ApiKey,
    /// The version of the API the client speaks.
    pub api_version: i16,
    /// Echoed in the response so the client can match it.
    pub correlation_id: i32,
    /// The client's self-chosen name, if any.
    pub client_id: Option<String>,
    /// The decoded body.
    pub body: RequestKind,
}

/// Reads the size prefix at the start of `buf`: the frame's length (without the prefix) once
/// the whole frame is there, `Ok(None)` while it is incomplete, an error for an absurd size.
pub fn frame_len(buf: &[u8], request_bytes_max: usize) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < SIZE_PREFIX_LEN {
        return Ok(None);
    }
    let size = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
    if size < 0 || size as usize > request_bytes_max {
        return Err(ProtocolError::FrameSize {
            size: i64::from(size),
            max: request_bytes_max,
        });
    }
    let size = size as usize;
    Ok((buf.len() >= SIZE_PREFIX_LEN + size).then_some(size))
}

/// Decodes one request frame (without its size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Request, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::ShortHeader(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes(frame[4..8].try_into().expect("4 bytes"));
    let api = ApiKey::try_from(key).map_err(|()| ProtocolError::UnknownApiKey(key))?;
    if !versions::is_supported(api, version) {
        return Err(ProtocolError::UnsupportedVersion {
            api,
            version,
            correlation_id,
        });
    }
    let malformed = |err: anyhow::Error| ProtocolError::Malformed {
        api,
        version,
        reason: err.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(api, &mut frame, version).map_err(malformed)?;
    Ok(Request {
        api_key: api,
        api_version: version,
        correlation_id,
        client_id: header.client_id.map(|id| id.as_str().to_string()),
        body,
    })
}

/// Encodes a response with its size prefix and header, in the request's API version. An
/// error means the broker built a response the version cannot carry (a bug to report).
pub fn encode_response(request: &Request, response: &ResponseKind) -> Result<BytesMut, String> {
    encode_response_for(
        request.api_key,
        request.api_version,
        request.correlation_id,
        response,
    )
}

/// Encodes a response for an API, version and correlation id, with size prefix and header.
pub fn encode_response_for(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<BytesMut, String> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0); // size, patched below
    out.put_i32(correlation_id);
    if api.response_header_version(version) >= 1 {
        out.put_u8(0); // no tagged fields in the response header
    }
    response
        .encode(&mut out, version)
        .map_err(|err| format!("encoding a {api:?} v{version} response failed: {err:#}"))?;
    let size = (out.len() - SIZE_PREFIX_LEN) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

/// Writes a Kafka unsigned varint (used by flexible versions).
pub(crate) fn put_unsigned_varint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Peeks the request's API key, version and correlation id without decoding the rest.
pub fn peek_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let mut buf = frame;
    if buf.len() < 8 {
        return None;
    }
    Some((buf.get_i16(), buf.get_i16(), buf.get_i32()))
}

#[cfg(test)]
pub(crate) mod tests;
