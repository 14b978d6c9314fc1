//! Tests of framing, request decoding and the Fetch response encoder, checked against the
//! `kafka-protocol` crate's independent decoders.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchResponse, MetadataRequest, RequestHeader, RequestKind,
    ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::*;
use crate::protocol::fetch_types::FileRange;
use crate::ErrorCode;

/// A request frame (without its size prefix) as a client sends it.
pub(crate) fn frame<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("test"));
    let mut out = BytesMut::new();
    header
        .encode(&mut out, api.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

#[test]
fn protocol_frame_len_waits_for_whole_frames_and_refuses_absurd_sizes() {
    assert_eq!(
        frame_len(&[0, 0], 100).unwrap(),
        None,
        "half a size prefix is Ok(None)"
    );
    assert_eq!(frame_len(&[0, 0, 0, 3, 1, 2], 100).unwrap(), None);
    assert_eq!(frame_len(&[0, 0, 0, 3, 1, 2, 3], 100).unwrap(), Some(3));
    assert!(matches!(
        frame_len(&[0xff, 0xff, 0xff, 0xff], 100),
        Err(ProtocolError::FrameSize { .. })
    ));
    assert!(matches!(
        frame_len(&[0, 0, 1, 0], 100),
        Err(ProtocolError::FrameSize { .. })
    ));
}

#[test]
fn protocol_decodes_requests_and_rejects_unknown_keys_and_versions() {
    let body = ApiVersionsRequest::default();
    let request = decode_request(frame(ApiKey::ApiVersions, 0, 7, &body)).unwrap();
    assert_eq!(
        (request.api_key, request.correlation_id),
        (ApiKey::ApiVersions, 7)
    );
    assert_eq!(request.client_id.as_deref(), Some("test"));

    let flexible = decode_request(frame(ApiKey::Metadata, 12, 9, &MetadataRequest::default()));
    assert!(matches!(flexible.unwrap().body, RequestKind::Metadata(_)));

    let mut unknown = BytesMut::new();
    unknown.put_i16(999);
    unknown.put_i16(0);
    unknown.put_i32(1);
    unknown.put_i16(-1);
    assert!(matches!(
        decode_request(unknown.freeze()),
        Err(ProtocolError::UnknownApiKey(999))
    ));

    let too_new = decode_request(frame(ApiKey::ApiVersions, 3, 5, &body));
    assert!(too_new.is_ok(), "v3 is served");
    let mut newer = frame(ApiKey::ApiVersions, 3, 5, &body).to_vec();
    newer[3] = 99; // version 99
    let err = decode_request(Bytes::from(newer)).unwrap_err();
    assert!(matches!(
        err,
        ProtocolError::UnsupportedVersion {
            correlation_id: 5,
            ..
        }
    ));

    let truncated = frame(ApiKey::Metadata, 1, 1, &MetadataRequest::default());
    let err = decode_request(truncated.slice(..truncated.len() - 2)).unwrap_err();
    assert!(matches!(err, ProtocolError::Malformed { .. }), "{err}");
    assert!(matches!(
        decode_request(Bytes::from_static(&[0, 1])),
        Err(ProtocolError::ShortHeader(2))
    ));
}

/// Replaces each file part with `fill` bytes of its length, giving the bytes on the wire.
fn flatten(parts: &[Part], fill: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Bytes(bytes) => out.extend_from_slice(bytes),
            Part::File(range) => out.extend(std::iter::repeat_n(fill, range.length as usize)),
        }
    }
    out
}

#[test]
fn protocol_fetch_response_decodes_with_an_independent_decoder_in_every_version() {
    let records = FileRange {
        dir: "t-0".into(),
        file: "0.log".into(),
        position: 10,
        length: 70,
    };
    let data = FetchResponseData {
        error_code: 0,
        session_id: 0,
        topics: vec![FetchTopicData {
            name: "orders".into(),
            topic_id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            partitions: vec![
                FetchPartitionData {
                    partition_index: 0,
                    error_code: 0,
                    high_watermark: 42,
                    last_stable_offset: 42,
                    log_start_offset: 3,
                    aborted_transactions: Vec::new(),
                    records: vec![records],
                    diverging_epoch: None,
                },
                FetchPartitionData {
                    partition_index: 1,
                    error_code: ErrorCode::OffsetOutOfRange.code(),
                    high_watermark: 5,
                    last_stable_offset: 5,
                    log_start_offset: 0,
                    aborted_transactions: Vec::new(),
                    records: Vec::new(),
                    diverging_epoch: Some((4, 17)),
                },
            ],
        }],
    };
    for version in FETCH_VERSIONS {
        let parts = encode_fetch_response(version, 77, &data);
        assert!(
            parts.iter().any(|p| matches!(p, Part::File(_))),
            "records stay in the file"
        );
        let wire = flatten(&parts, 0xab);
        let size = i32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
        assert_eq!(size, wire.len() - 4, "v{version}: size prefix");
        let mut body = Bytes::from(wire[4..].to_vec());
        let header_version = ApiKey::Fetch.response_header_version(version);
        let header = ResponseHeader::decode(&mut body, header_version).unwrap();
        assert_eq!(header.correlation_id, 77);
        let decoded = FetchResponse::decode(&mut body, version).unwrap();
        assert!(body.is_empty(), "v{version}: no trailing bytes");
        let topic = &decoded.responses[0];
        if version >= 13 {
            assert_eq!(
                topic.topic_id, data.topics[0].topic_id,
                "v{version}: topic id"
            );
        } else {
            assert_eq!(topic.topic.0.as_str(), "orders");
        }
        let first = &topic.partitions[0];
        assert_eq!((first.high_watermark, first.last_stable_offset), (42, 42));
        if version >= 5 {
            assert_eq!(first.log_start_offset, 3);
        }
        assert_eq!(first.records.as_ref().unwrap().len(), 70);
        assert!(first.records.as_ref().unwrap().iter().all(|&b| b == 0xab));
        let second = &topic.partitions[1];
        assert_eq!(second.error_code, ErrorCode::OffsetOutOfRange.code());
        assert_eq!(second.records.as_ref().map_or(0, |r| r.len()), 0);
        let diverging = &second.diverging_epoch;
        if version >= 12 {
            assert_eq!(
                (diverging.epoch, diverging.end_offset),
                (4, 17),
                "v{version}"
            );
        } else {
            assert_eq!(
                (diverging.epoch, diverging.end_offset),
                (-1, -1),
                "v{version}"
            );
        }
    }
}

#[test]
fn protocol_api_versions_response_has_no_default_tagged_fields() {
    // Debian's kcat 1.7.1 (librdkafka 2.0.2) misparses tagged fields that only hold defaults.
    let request = decode_request(frame(
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    ))
    .unwrap();
    let response = crate::broker::api_versions(ErrorCode::None);
    let bytes = encode_response(&request, &response).unwrap();
    // Size, correlation id, error code, then the compact array and its entries; the body ends
    // with throttle time and one empty tagged-field section.
    let tail = &bytes[bytes.len() - 5..];
    assert_eq!(
        tail,
        &[0, 0, 0, 0, 0],
        "throttle 0 then an empty tag section"
    );
}
