//! Micro-benchmarks of the protocol engine's hot path.
//! Run: `cargo bench -p pooler-benches --bench protocol`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pooler_core::internals::{split_frame, split_startup};
use std::hint::black_box;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A server reply to `SELECT` of 10 small rows, as PostgreSQL sends it.
fn select_reply() -> Vec<u8> {
    let mut v = msg(b'1', b"");
    v.extend(msg(b'2', b""));
    v.extend(msg(b'T', b"\0\x01aid\0\0\0\0\0\0\x01\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0"));
    for i in 0..10u8 {
        v.extend(msg(b'D', &[0, 1, 0, 0, 0, 2, b'4', b'0' + i]));
    }
    v.extend(msg(b'C', b"SELECT 10\0"));
    v.extend(msg(b'Z', b"I"));
    v
}

fn bench_frames(c: &mut Criterion) {
    let reply = select_reply();
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Bytes(reply.len() as u64));
    g.bench_function("split_frame/select_reply", |b| {
        let mut buf = BytesMut::with_capacity(reply.len());
        b.iter(|| {
            buf.extend_from_slice(&reply);
            let mut n = 0;
            while let Some(f) = split_frame(&mut buf, 1 << 20).unwrap() {
                n += f.body().len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn bench_startup(c: &mut Criterion) {
    let mut packet = BytesMut::new();
    pooler_core::internals::write::startup_message(
        &mut packet,
        0,
        &[("user", "app"), ("database", "appdb"), ("application_name", "psql"), ("client_encoding", "UTF8")],
    );
    c.bench_function("startup/parse_psql_startup", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&packet[..]);
            black_box(split_startup(&mut buf).unwrap())
        })
    });
}

criterion_group!(benches, bench_frames, bench_startup);
criterion_main!(benches);
