//! Zero-copy framing of v3 protocol messages: whole frames. (The relay
//! streams what it need not see through its own core, `relay::core`.)

use bytes::{Bytes, BytesMut};

use super::ProtocolError;

/// Length of a regular message header: one tag byte plus a 4-byte length.
pub const HEADER_LEN: usize = 5;

/// One whole protocol message (tag, length and body), sharing the read buffer's
/// memory: splitting it off never copies the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
}

impl Frame {
    /// The message type byte (`b'Q'`, `b'Z'`, ...).
    #[inline]
    pub fn tag(&self) -> u8 {
        self.bytes[0]
    }

    /// The message body: everything after the 5-byte header.
    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The whole message, header included, as it travels on the wire.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole message as shared bytes, for forwarding without a copy.
    #[inline]
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

/// Reads the header at the front of `buf`: `Ok(None)` when fewer than five bytes
/// are there, else the tag and the total frame length (header included).
///
/// A length field below 4 is a protocol violation: the length counts itself.
#[inline]
pub fn peek_header(buf: &[u8]) -> Result<Option<(u8, usize)>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(ProtocolError::InvalidLength { tag, len });
    }
    Ok(Some((tag, len + 1)))
}

/// Splits one whole frame off the front of `buf`.
///
/// `Ok(None)` means more bytes are needed. A frame whose declared length exceeds
/// `max_len` (header included) is rejected before any memory is reserved for it,
/// so a hostile length can never make the pooler allocate. The payload is not
/// copied: the frame shares `buf`'s allocation.
pub fn split_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, ProtocolError> {
    let Some((tag, total)) = peek_header(buf)? else {
        return Ok(None);
    };
    if total > max_len {
        return Err(ProtocolError::MessageTooLarge { tag, len: total, max: max_len });
    }
    if buf.len() < total {
        // Reserve only what the frame still needs; bounded by max_len above.
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(Frame { bytes: buf.split_to(total).freeze() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn split_frame_waits_for_whole_message_then_shares_memory() {
        let wire = msg(b'Q', b"select 1\0");
        let mut buf = BytesMut::from(&wire[..7]);
        assert_eq!(split_frame(&mut buf, 1024).unwrap(), None);
        buf.extend_from_slice(&wire[7..]);
        let frame = split_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(frame.tag(), b'Q');
        assert_eq!(frame.body(), b"select 1\0");
        assert!(buf.is_empty());
    }

    #[test]
    fn split_frame_rejects_oversized_length_before_reserving() {
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        let err = split_frame(&mut buf, 1 << 20).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooLarge { tag: b'Q', .. }));
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn split_frame_rejects_length_below_four() {
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert!(matches!(split_frame(&mut buf, 1024), Err(ProtocolError::InvalidLength { len: 3, .. })));
    }

    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn encode(msgs: &[(u8, Vec<u8>)]) -> Vec<u8> {
            msgs.iter().flat_map(|(t, b)| msg(*t, b)).collect()
        }

        proptest! {
            #[test]
            fn frames_cut_at_random_boundaries_come_back_whole_and_unchanged(
                msgs in vec((any::<u8>(), vec(any::<u8>(), 0..300)), 0..20),
                cuts in vec(1usize..64, 1..30),
            ) {
                let wire = encode(&msgs);
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                let mut pos = 0;
                let mut i = 0;
                while pos < wire.len() {
                    let n = cuts[i % cuts.len()].min(wire.len() - pos);
                    buf.extend_from_slice(&wire[pos..pos + n]);
                    pos += n;
                    i += 1;
                    while let Some(f) = split_frame(&mut buf, 1024).unwrap() {
                        got.push((f.tag(), f.body().to_vec()));
                    }
                }
                prop_assert!(buf.is_empty());
                prop_assert_eq!(got, msgs);
            }

            #[test]
            fn arbitrary_bytes_never_panic_nor_reserve_past_the_limit(
                data in vec(any::<u8>(), 0..4000),
                chunk in 1usize..64,
            ) {
                let mut buf = BytesMut::new();
                'outer: for piece in data.chunks(chunk) {
                    buf.extend_from_slice(piece);
                    loop {
                        match split_frame(&mut buf, 2048) {
                            Ok(Some(f)) => prop_assert!(f.as_bytes().len() <= 2048),
                            Ok(None) => break,
                            Err(_) => break 'outer,
                        }
                    }
                    prop_assert!(buf.capacity() <= 2048 + 4096 + data.len());
                }
            }

        }
    }
}
