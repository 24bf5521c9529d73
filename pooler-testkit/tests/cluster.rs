//! The harness against real PostgreSQL: clusters start, replicate, stop,
//! promote, run in parallel, and leave nothing behind.

use std::time::Duration;

use pooler_testkit::{Cluster, StopMode};

#[test]
fn primary_and_two_standbys_replicate() {
    let cluster = Cluster::builder().standbys(2).start().unwrap();
    assert_eq!(cluster.primary().query_one("SELECT pg_is_in_recovery()").unwrap(), "f");
    for s in cluster.standbys() {
        assert_eq!(s.query_one("SELECT pg_is_in_recovery()").unwrap(), "t", "{}", s.name());
    }
    cluster.primary().query_one("CREATE TABLE t AS SELECT 42 AS x").unwrap();
    cluster.wait_for_replication(Duration::from_secs(30)).unwrap();
    for s in cluster.standbys() {
        assert_eq!(s.query_one("SELECT x FROM t").unwrap(), "42");
    }
    let ports: Vec<u16> = cluster.nodes().map(|n| n.port()).collect();
    assert_eq!(ports.len(), 3);
    assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
}

#[test]
fn clusters_built_in_parallel_are_independent_and_removed_on_drop() {
    let handles: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let c = Cluster::builder().init_sql(&format!("CREATE TABLE mark AS SELECT {i} AS v")).start().unwrap();
                assert_eq!(c.primary().query_one("SELECT v FROM mark").unwrap(), i.to_string());
                (c.primary().port(), c.dir().to_path_buf(), c)
            })
        })
        .collect();
    let mut clusters: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ports: Vec<u16> = clusters.iter().map(|c| c.0).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    let dirs: Vec<_> = clusters.iter().map(|c| c.1.clone()).collect();
    clusters.clear();
    for d in dirs {
        assert!(!d.exists(), "{} removed", d.display());
    }
}

#[test]
fn settings_and_hba_lines_take_effect() {
    let cluster = Cluster::builder()
        .setting("work_mem", "7MB")
        .hba_line("host all locked_out 127.0.0.1/32 reject")
        .init_sql("CREATE ROLE locked_out LOGIN")
        .start()
        .unwrap();
    assert_eq!(cluster.primary().query_one("SHOW work_mem").unwrap(), "7MB");
    let out = std::process::Command::new(cluster.bin_dir().join("psql"))
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.primary().port().to_string(),
            "-U",
            "locked_out",
            "-d",
            "postgres",
            "-c",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn stop_start_and_promote_work() {
    let cluster = Cluster::builder().standbys(1).start().unwrap();
    let primary = cluster.primary();
    let standby = &cluster.standbys()[0];
    primary.stop(StopMode::Immediate).unwrap();
    assert!(!primary.is_running());
    assert!(primary.query_one("SELECT 1").is_err());
    standby.promote().unwrap();
    assert_eq!(standby.query_one("SELECT pg_is_in_recovery()").unwrap(), "f");
    standby.query_one("CREATE TABLE after_promotion (x int)").unwrap();
    primary.start().unwrap();
    assert!(primary.is_running());
    assert!(primary.postmaster_pid().is_some());
}
