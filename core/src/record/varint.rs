//! Zig-zag variable-length integers, as Kafka encodes record fields.

/// Appends `value` as a zig-zag varint (Kafka's `varint`/`varlong`).
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// Appends `value` as a zig-zag varint.
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_varlong(out, i64::from(value));
}

/// Reads a zig-zag varlong from the start of `buf`: the value and the bytes it took, or `None`
/// if `buf` ends inside it or it is longer than 10 bytes.
pub fn get_varlong(buf: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// Reads a zig-zag varint (must fit in 32 bits) from the start of `buf`.
pub fn get_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let (value, len) = get_varlong(buf)?;
    let value = i32::try_from(value).ok()?;
    Some((value, len))
}

/// The number of bytes `value` takes as a zig-zag varlong.
pub fn varlong_len(value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut len = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edge_values() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, value);
            assert_eq!(buf.len(), varlong_len(value));
            assert_eq!(get_varlong(&buf), Some((value, buf.len())));
        }
        assert_eq!(get_varlong(&[0x80, 0x80]), None, "truncated varint");
        assert_eq!(
            get_varint(&[0xfe, 0xff, 0xff, 0xff, 0x1f]),
            None,
            "overflows i32"
        );
    }
}
