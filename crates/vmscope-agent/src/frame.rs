//! The frame format, identical in both directions:
//!
//! ```text
//! offset  size  field
//!      0     4  magic  "VMSa"
//!      4     1  kind   1 = request, 2 = response
//!      5     3  zero
//!      8     4  id     request id (little-endian); a response repeats it
//!     12     4  len    payload length (little-endian), at most MAX_PAYLOAD
//!     16   len  payload (postcard)
//! 16+len     4  crc32  of bytes 0 .. 16+len (little-endian)
//! ```
//!
//! A reader that sees anything else — boot noise, a torn frame, a bad CRC — drops one
//! byte and scans for the next magic, so the channel recovers from any garbage.

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"VMSa";
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// The largest payload accepted; bigger frames are treated as garbage.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Who sent a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Host to guest.
    Request = 1,
    /// Guest to host.
    Response = 2,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Request or response.
    pub kind: Kind,
    /// Request id.
    pub id: u32,
    /// The encoded message.
    pub payload: Vec<u8>,
}

/// Encodes a frame.
pub fn encode(kind: Kind, id: u32, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= MAX_PAYLOAD, "payload of {} bytes exceeds MAX_PAYLOAD", payload.len());
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[kind as u8, 0, 0, 0]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Incremental decoder: feed bytes as they arrive, take frames out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes skipped as garbage so far.
    pub skipped: u64,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete, valid frame, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            // Align the buffer on a magic.
            match find_magic(&self.buf) {
                Some(0) => {}
                Some(n) => self.skip(n),
                None => {
                    // Keep a tail that may be the start of a magic.
                    let keep = self.buf.len().min(MAGIC.len() - 1);
                    let n = self.buf.len() - keep;
                    self.skip(n);
                    return None;
                }
            }
            if self.buf.len() < HEADER_LEN {
                return None;
            }
            let kind = match self.buf[4] {
                1 => Some(Kind::Request),
                2 => Some(Kind::Response),
                _ => None,
            };
            let len = u32::from_le_bytes(self.buf[12..16].try_into().expect("4 bytes")) as usize;
            let (Some(kind), true) = (kind, len <= MAX_PAYLOAD && self.buf[5..8] == [0, 0, 0]) else {
                self.skip(1);
                continue;
            };
            let total = HEADER_LEN + len + 4;
            if self.buf.len() < total {
                return None;
            }
            let crc = u32::from_le_bytes(self.buf[total - 4..total].try_into().expect("4 bytes"));
            if crc32fast::hash(&self.buf[..total - 4]) != crc {
                self.skip(1);
                continue;
            }
            let id = u32::from_le_bytes(self.buf[8..12].try_into().expect("4 bytes"));
            let payload = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
            self.buf.drain(..total);
            return Some(Frame { kind, id, payload });
        }
    }

    fn skip(&mut self, n: usize) {
        self.buf.drain(..n);
        self.skipped += n as u64;
    }
}

fn find_magic(b: &[u8]) -> Option<usize> {
    b.windows(MAGIC.len()).position(|w| w == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_through_garbage_and_split_reads() {
        let f1 = encode(Kind::Request, 7, b"hello\0\xff binary");
        let f2 = encode(Kind::Response, 8, &[]);
        let mut wire = b"boot noise VMS VMSa\x09garbage".to_vec();
        wire.extend_from_slice(&f1);
        let mut torn = f2.clone();
        torn[19] ^= 0xff; // corrupt the CRC of one copy
        wire.extend_from_slice(&torn);
        wire.extend_from_slice(&f2);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            d.feed(chunk);
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Frame { kind: Kind::Request, id: 7, payload: b"hello\0\xff binary".to_vec() });
        assert_eq!(got[1].id, 8);
        assert!(d.skipped > 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = Decoder::new();
            d.feed(&bytes);
            while d.next_frame().is_some() {}
        }

        #[test]
        fn frames_survive_noise(noise in proptest::collection::vec(any::<u8>(), 0..64),
                                payload in proptest::collection::vec(any::<u8>(), 0..256),
                                id in any::<u32>()) {
            let mut d = Decoder::new();
            d.feed(&noise);
            d.feed(&encode(Kind::Response, id, &payload));
            let mut last = None;
            while let Some(f) = d.next_frame() { last = Some(f); }
            let f = last.expect("the real frame comes last");
            prop_assert_eq!(f.id, id);
            prop_assert_eq!(f.payload, payload);
        }
    }
}
