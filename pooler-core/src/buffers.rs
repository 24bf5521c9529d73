//! Relay buffers recycled per thread: an idle client holds no buffer, and a
//! busy one does not pay an allocation (and regrowth) per transaction.

use bytes::BytesMut;

/// Bytes reserved per socket read.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Gives an empty buffer's memory back to the thread's spares.
pub(crate) fn release_memory(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        recycle(std::mem::take(buf));
    }
}

thread_local! {
    /// Empty relay buffers given back between transactions, for the next
    /// transaction on this thread to take instead of allocating (and growing)
    /// new ones: an idle client holds no buffer, a busy one does not pay an
    /// allocation per message. Bounded.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most spare buffers kept per thread (at most 4 MiB of READ_CHUNK-sized ones).
const SPARE_MAX: usize = 256;

/// An empty buffer with room for a read: a spare one, or a new one.
pub(crate) fn recycled() -> BytesMut {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
}

/// Keeps `buf` (emptied) as a spare if it is of the usual size and there is room.
pub(crate) fn recycle(mut buf: BytesMut) {
    buf.clear();
    // A buffer read from and advanced has its consumed front still allocated:
    // take it back (no allocation; fails if the memory is shared).
    if buf.capacity() < READ_CHUNK && !buf.try_reclaim(READ_CHUNK) {
        return;
    }
    if (READ_CHUNK..=4 * READ_CHUNK).contains(&buf.capacity()) {
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_MAX {
                s.push(buf);
            }
        });
    }
}
