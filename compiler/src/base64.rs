//! Standard base64 (RFC 4648, with padding): a Kubernetes Secret's `data`, and bytes
//! fields in proto3 JSON.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `bytes` as padded base64.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes `text` encodes, or `None` when it is not base64. Whitespace is skipped, as
/// `kubectl` folds long values.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits must be zero padding, and `=` may only complete a 4-character group.
    let complete = (out.len() * 4).div_ceil(3);
    if padding > 2
        || (acc & ((1 << bits) - 1)) != 0
        || (padding > 0 && (complete + padding) % 4 != 0)
    {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_what_kubernetes_writes() {
        assert_eq!(decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(decode("aGVs\n bG8=").unwrap(), b"hello");
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(decode("aGVsbG8").unwrap(), b"hello", "unpadded");
        assert!(
            decode("aGVsbG9").is_none(),
            "leftover bits that are not zero"
        );
        assert!(decode("a*==").is_none());
        assert!(decode("aGVsbG8=aGVs").is_none(), "data after padding");
        for s in [&b""[..], b"h", b"he", b"hel", b"hello", b"[redacted]"] {
            assert_eq!(decode(&super::encode(s)).unwrap(), s);
        }
        assert_eq!(super::encode(b"[redacted]"), "W3JlZGFjdGVkXQ==");
    }
}
