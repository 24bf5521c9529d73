//! Zero-copy framing of v3 protocol messages: whole frames and streaming scans.

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

/// What a [`Scanner`] callback decides about one whole, inspected frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the frame and keep scanning.
    Forward,
    /// Forward the frame, then stop: the caller acts before more is relayed
    /// (for example, release a server connection at ReadyForQuery).
    ForwardAndStop,
    /// Do not forward the frame and stop; it stays at the front of the buffer
    /// for the caller to take with [`split_frame`].
    Hold,
}

/// Result of one [`Scanner::scan`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Bytes at the front of the buffer that may be forwarded as they are.
    pub forward: usize,
    /// True when a callback returned [`Verdict::ForwardAndStop`] or
    /// [`Verdict::Hold`]: scanning stopped on purpose, not for lack of bytes.
    pub stopped: bool,
}

/// Walks a stream of frames and tells how much of a buffer can be relayed.
///
/// Only frames whose tag the caller wants to inspect are gathered whole (and
/// limited to `max_inspect` bytes); every other frame streams through: its
/// header and whatever part of its body has arrived are forwarded at once and
/// the rest passes as it comes. A 1 GB `DataRow` therefore costs no more memory
/// than one read buffer.
#[derive(Clone, Debug)]
pub struct Scanner {
    /// Body bytes of a passing-through frame that have not arrived yet.
    remaining: usize,
    /// Tag of the last frame whose header was passed on (0 before any).
    last_tag: u8,
    max_inspect: usize,
}

impl Scanner {
    /// A scanner positioned at a frame boundary.
    pub fn new(max_inspect: usize) -> Self {
        Scanner { remaining: 0, last_tag: 0, max_inspect }
    }

    /// True when the scanner stands between two frames (nothing is half relayed).
    #[inline]
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// Tag of the last frame forwarded (wholly or in part); 0 before any.
    #[inline]
    pub fn last_tag(&self) -> u8 {
        self.last_tag
    }

    /// Scans `buf` from the front. `inspect(tag)` says which frames must be seen
    /// whole; for each of those `on_frame(tag, body)` decides. Returns how many
    /// bytes from the front may be forwarded now.
    #[inline]
    pub fn scan(
        &mut self,
        buf: &[u8],
        inspect: impl Fn(u8) -> bool,
        on_frame: impl FnMut(u8, &[u8]) -> Verdict,
    ) -> Result<Scan, ProtocolError> {
        self.scan_stopping_at(buf, |_| false, inspect, on_frame)
    }

    /// [`Scanner::scan`], also stopping in front of the first frame whose tag
    /// `stop_at` accepts, as soon as its tag byte has arrived (its length
    /// need not have): `stopped` is set, `forward` ends where that frame
    /// starts, and the frame stays in the buffer, unscanned. A client stream
    /// uses it to refuse a message type on the type byte alone, as
    /// PostgreSQL does.
    #[inline]
    pub fn scan_stopping_at(
        &mut self,
        buf: &[u8],
        stop_at: impl Fn(u8) -> bool,
        inspect: impl Fn(u8) -> bool,
        mut on_frame: impl FnMut(u8, &[u8]) -> Verdict,
    ) -> Result<Scan, ProtocolError> {
        let mut pos = 0;
        loop {
            if self.remaining > 0 {
                let take = self.remaining.min(buf.len() - pos);
                pos += take;
                self.remaining -= take;
                if self.remaining > 0 {
                    return Ok(Scan { forward: pos, stopped: false });
                }
            }
            if buf.get(pos).is_some_and(|&t| stop_at(t)) {
                return Ok(Scan { forward: pos, stopped: true });
            }
            let Some((tag, total)) = peek_header(&buf[pos..])? else {
                return Ok(Scan { forward: pos, stopped: false });
            };
            if inspect(tag) {
                if total > self.max_inspect {
                    return Err(ProtocolError::MessageTooLarge { tag, len: total, max: self.max_inspect });
                }
                if buf.len() - pos < total {
                    return Ok(Scan { forward: pos, stopped: false });
                }
                match on_frame(tag, &buf[pos + HEADER_LEN..pos + total]) {
                    Verdict::Forward => {
                        pos += total;
                        self.last_tag = tag;
                    }
                    Verdict::ForwardAndStop => {
                        self.last_tag = tag;
                        return Ok(Scan { forward: pos + total, stopped: true });
                    }
                    Verdict::Hold => return Ok(Scan { forward: pos, stopped: true }),
                }
            } else {
                self.last_tag = tag;
                let have = buf.len() - pos;
                if have >= total {
                    pos += total;
                } else {
                    pos = buf.len();
                    self.remaining = total - have;
                    return Ok(Scan { forward: pos, stopped: false });
                }
            }
        }
    }
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

    #[test]
    fn scanner_streams_large_frames_and_inspects_small_ones() {
        let mut wire = msg(b'D', &[7u8; 100]);
        wire.extend(msg(b'Z', b"I"));
        let mut sc = Scanner::new(64);
        let mut seen = Vec::new();
        // Feed the first 30 bytes: the DataRow header and part of its body pass.
        let s = sc.scan(
            &wire[..30],
            |t| t == b'Z',
            |t, b| {
                seen.push((t, b.to_vec()));
                Verdict::Forward
            },
        );
        assert_eq!(s.unwrap(), Scan { forward: 30, stopped: false });
        assert!(!sc.at_boundary());
        let s = sc.scan(
            &wire[30..],
            |t| t == b'Z',
            |t, b| {
                seen.push((t, b.to_vec()));
                Verdict::ForwardAndStop
            },
        );
        assert_eq!(s.unwrap(), Scan { forward: wire.len() - 30, stopped: true });
        assert!(sc.at_boundary());
        assert_eq!(seen, vec![(b'Z', b"I".to_vec())]);
    }

    #[test]
    fn scanner_holds_frame_for_caller() {
        let mut wire = msg(b'Q', b"x\0");
        wire.extend(msg(b'X', b""));
        let mut sc = Scanner::new(64);
        let s = sc.scan(&wire, |t| t == b'X', |_, _| Verdict::Hold).unwrap();
        assert_eq!(s, Scan { forward: 7, stopped: true });
    }

    #[test]
    fn scanner_stops_in_front_of_a_refused_tag_on_its_first_byte() {
        let mut wire = msg(b'Q', b"x\0");
        wire.extend(msg(b'D', &[1u8; 20]));
        let mut sc = Scanner::new(64);
        // Only the tag byte of the refused frame has arrived.
        let mut partial = wire[..7].to_vec();
        partial.push(b'@');
        let s = sc.scan_stopping_at(&partial, |t| t == b'@', |t| t == b'Q', |_, _| Verdict::Forward).unwrap();
        assert_eq!(s, Scan { forward: 7, stopped: true });
        assert_eq!(sc.last_tag(), b'Q');
        // Inside a streaming frame, bytes equal to the tag do not count.
        let mut sc = Scanner::new(64);
        let s = sc.scan_stopping_at(&wire[7..12], |t| t == 1, |_| false, |_, _| Verdict::Forward).unwrap();
        assert_eq!(s, Scan { forward: 5, stopped: false });
        let s = sc.scan_stopping_at(&wire[12..], |t| t == 1, |_| false, |_, _| Verdict::Forward).unwrap();
        assert_eq!(s, Scan { forward: wire.len() - 12, stopped: false });
        assert!(sc.at_boundary());
    }

    #[test]
    fn scanner_limits_inspected_frames() {
        let wire = msg(b'Z', &[0u8; 100]);
        let mut sc = Scanner::new(64);
        assert!(sc.scan(&wire[..5], |_| true, |_, _| Verdict::Forward).is_err());
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

            #[test]
            fn scanner_forwards_every_byte_once_in_order_and_sees_each_inspected_frame(
                msgs in vec((prop::sample::select(vec![b'D', b'Z', b'S', b'C', b'T']), vec(any::<u8>(), 0..300)), 0..20),
                cuts in vec(1usize..64, 1..30),
            ) {
                let wire = encode(&msgs);
                let mut sc = Scanner::new(1024);
                let mut pending = BytesMut::new();
                let mut forwarded = Vec::new();
                let mut seen = Vec::new();
                let mut pos = 0;
                let mut i = 0;
                while pos < wire.len() {
                    let n = cuts[i % cuts.len()].min(wire.len() - pos);
                    pending.extend_from_slice(&wire[pos..pos + n]);
                    pos += n;
                    i += 1;
                    let s = sc.scan(&pending, |t| t == b'Z' || t == b'S', |t, b| {
                        seen.push((t, b.to_vec()));
                        Verdict::Forward
                    }).unwrap();
                    forwarded.extend_from_slice(&pending.split_to(s.forward));
                }
                prop_assert!(pending.is_empty());
                prop_assert!(sc.at_boundary());
                prop_assert_eq!(forwarded, wire);
                let expected: Vec<_> = msgs.into_iter().filter(|(t, _)| *t == b'Z' || *t == b'S').collect();
                prop_assert_eq!(seen, expected);
            }
        }
    }
}
