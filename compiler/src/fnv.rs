//! FNV-1a, 64 bits: a stable, dependency-free hash for resource versions and the hashes in
//! resource names. Collisions only cost a missed update if two different encodings of the
//! same resource collided, which at 64 bits and a handful of versions per resource is not a
//! practical concern.

#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv1a(pub u64);

impl Fnv1a {
    pub fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds a hash of a part: its eight bytes, little-endian.
    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}
