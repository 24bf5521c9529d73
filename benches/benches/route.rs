//! Router decisions per second: which node serves a read, over a primary and
//! two standbys all in service, by weighted random choice, by least
//! outstanding requests, and with a read-your-writes position to honour.
//! Run: `cargo bench -p pooler-benches --bench route`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pooler_core::config::{BalancePolicy, NodeConfig};
use pooler_core::internals::Router;
use pooler_core::Config;
use pooler_core::{Role, Status};
use std::hint::black_box;

/// A router over three nodes, every one checked and up, balancing on.
fn router(policy: BalancePolicy) -> Router {
    let nodes = (0..3).map(|i| NodeConfig::new("127.0.0.1", 5432 + i)).collect();
    let mut config = Config::with_nodes(nodes);
    config.routing.load_balance = true;
    config.routing.policy = policy;
    let r = Router::new(&config).expect("valid routing settings");
    let mut s = (*r.snapshot()).clone();
    for n in &mut s.nodes {
        n.status = Status::Up;
        n.pg_up = true;
        n.pg_role = if n.id == 0 { Role::Primary } else { Role::Standby };
    }
    r.topology().publish(s);
    r
}

fn bench_route(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1));
    let weighted = router(BalancePolicy::WeightedRandom);
    g.bench_function("read_node weighted random", |b| {
        b.iter(|| black_box(weighted.read_node(black_box("app"), black_box("web"), 0)))
    });
    let least = router(BalancePolicy::LeastOutstanding);
    g.bench_function("read_node least outstanding", |b| {
        b.iter(|| black_box(least.read_node(black_box("app"), black_box("web"), 0)))
    });
    weighted.note_replayed(1, 100);
    g.bench_function("read_node with a read-your-writes position", |b| {
        b.iter(|| black_box(weighted.read_node(black_box("app"), black_box("web"), black_box(100))))
    });
    g.bench_function("primary", |b| b.iter(|| black_box(weighted.primary())));
    g.finish();
}

criterion_group!(benches, bench_route);
criterion_main!(benches);
