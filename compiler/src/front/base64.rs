//! Standard base64 (RFC 4648, with padding), as Kubernetes writes a Secret's `data`.

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
    }
}
