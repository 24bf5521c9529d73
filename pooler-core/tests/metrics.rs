//! End-to-end: the library records connections, checkouts and waits through
//! the `metrics` facade (into whatever recorder the embedder installs).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Counts every counter increment and histogram sample by metric name.
#[derive(Default, Clone)]
struct Tally(Arc<Mutex<HashMap<String, Arc<Cell>>>>);

#[derive(Default)]
struct Cell(AtomicU64);

impl metrics::CounterFn for Cell {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    fn absolute(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}
impl metrics::GaugeFn for Cell {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {}
}
impl metrics::HistogramFn for Cell {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Tally {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        self.0.lock().unwrap().entry(key.name().to_owned()).or_default().clone()
    }
    fn get(&self, name: &str) -> u64 {
        self.0.lock().unwrap().get(name).map(|c| c.0.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

impl Recorder for Tally {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_checkouts_and_waits_are_counted() {
    use pooler_core::metrics as m;
    let tally = Tally::default();
    metrics::set_global_recorder(tally.clone()).expect("only recorder in this test binary");

    let cluster = primary_only().await;
    let mut config = trust_config(&cluster);
    config.pool.size = 1;
    config.pool.checkout_timeout = Duration::from_secs(30);
    let pooler = TestPooler::start(config, None).await;

    let first = pooler.connect("postgres").await;
    first.simple_query("SELECT 1").await.unwrap();
    // A second client must wait for the only connection.
    let cfg = pooler.pg_config("postgres", "postgres");
    let second = tokio::spawn(async move {
        let c = connect_with(cfg).await.unwrap();
        c.simple_query("SELECT 2").await.unwrap();
    });
    assert!(eventually(Duration::from_secs(5), || tally.get(m::CHECKOUT_WAITS) == 1).await);
    drop(first);
    second.await.unwrap();

    assert_eq!(tally.get(m::CLIENT_CONNECTIONS), 2);
    assert_eq!(tally.get(m::CHECKOUTS), 2);
    assert_eq!(tally.get(m::CHECKOUT_WAITS), 1);
    assert_eq!(tally.get(m::SERVER_CONNECTIONS_OPENED), 1, "the second client reused the first's connection");
    assert_eq!(tally.get(m::CHECKOUT_WAIT_SECONDS), 2, "one wait-time sample per checkout");
}
