//! End-to-end with real repmgr: a repmgr-managed primary and two standbys
//! (`pooler_testkit::RepmgrCluster`) behind the pooler. Either repmgrd
//! promotes and the pooler discovers it, or the pooler promotes through the
//! shipped `examples/failover/repmgr_*.sh` scripts; in both, idle clients
//! carry on, writes land on the promoted node only, and the other standby
//! follows it. Also the recovery of a lost node with `repmgr_recover.sh`.
//!
//! repmgr must be installed for the PostgreSQL version in use
//! (`scripts/test.sh` installs `postgresql-<major>-repmgr`); these tests
//! fail when it is missing, and skip (saying why) only when scripts/test.sh
//! found no such package to install and said so in `POOLER_TEST_SKIP_REPMGR`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use pooler_core::config::{NodeConfig, PoolMode};
use pooler_core::{Config, Status};
use pooler_testkit::{RepmgrCluster, RepmgrFailover};

/// A repmgr cluster of a primary and two standbys with an `items` table, or
/// `None` (the test is skipped, with the reason printed) when repmgr cannot
/// be installed here.
async fn repmgr_cluster(failover: RepmgrFailover) -> Option<RepmgrCluster> {
    repmgr_cluster_with(failover, |b| b).await
}

/// [`repmgr_cluster`], with the builder adjusted by `f` first.
async fn repmgr_cluster_with(
    failover: RepmgrFailover,
    f: impl FnOnce(pooler_testkit::RepmgrBuilder) -> pooler_testkit::RepmgrBuilder,
) -> Option<RepmgrCluster> {
    if let Err(e) = pooler_testkit::repmgr_bin_dir() {
        match std::env::var("POOLER_TEST_SKIP_REPMGR") {
            Ok(why) if matches!(e, pooler_testkit::Error::RepmgrNotFound(_)) => {
                println!("skipped: repmgr is not installed and cannot be: {why}");
                return None;
            }
            _ => panic!("{e}: run the tests with scripts/test.sh, which installs it"),
        }
    }
    let builder = f(RepmgrCluster::builder()
        .failover(failover)
        .standbys(2)
        .init_sql("CREATE TABLE items (id serial PRIMARY KEY, v int, phase text)"));
    let cluster = tokio::task::spawn_blocking(move || builder.start().expect("start the repmgr cluster"))
        .await
        .expect("cluster task");
    Some(cluster)
}

/// Transaction pooling over the repmgr cluster's nodes in repmgr node_id
/// order (pooler node `i` is repmgr node `i + 1`), checks every 100 ms with
/// one retry, and writes waiting up to 60 s for a primary.
fn repmgr_config(cluster: &RepmgrCluster) -> Config {
    let nodes = cluster
        .nodes()
        .iter()
        .map(|n| NodeConfig {
            data_dir: Some(n.data_dir().display().to_string()),
            ..NodeConfig::new(n.host(), n.port())
        })
        .collect();
    let mut config = Config::with_nodes(nodes);
    config.auth.method = pooler_core::config::AuthMethod::Trust;
    config.server.log_connections = false;
    config.pool.mode = PoolMode::Transaction;
    config.health.period = Duration::from_millis(100);
    config.health.max_retries = 1;
    config.health.retry_delay = Duration::from_millis(100);
    config.failover.search_primary_node_timeout = Duration::from_secs(60);
    config.failover.command_timeout = Duration::from_secs(120);
    config
}

/// The shipped repmgr script `name` with `args`, in the local mode the
/// tests use: the nodes are on 127.0.0.1, so repmgr runs on this host (as
/// the server OS user through runuser when the tests run as root), with each
/// node's repmgr.conf found as `<cluster dir>/node<repmgr id>.conf`. The
/// pooler runs it with `sh -c`, inheriting its environment; the variables
/// are given on the command line, as an operator would in the config.
fn repmgr_script(cluster: &RepmgrCluster, name: &str, args: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/failover");
    let os_user = pooler_testkit::server_os_user().map(|(u, _, _)| format!("PG_OS_USER={u} ")).unwrap_or_default();
    format!(
        "PGBIN={} REPMGR_CONF_DIR={} REPMGR_NODE_ID_OFFSET=1 {os_user}sh {dir}/{name} {args}",
        cluster.bin_dir().display(),
        cluster.dir().display()
    )
}

/// Writes through `client` until one succeeds (the first attempt should:
/// a write that finds no primary waits for one); the time from `died` to
/// that success, the port that served it, and how many attempts failed.
async fn first_write(client: &tokio_postgres::Client, died: Instant) -> (Duration, u16, usize) {
    let mut failed = 0;
    loop {
        let r = client
            .query_one("INSERT INTO items (v, phase) VALUES (1000, 'after') RETURNING inet_server_port()", &[])
            .await;
        match r {
            Ok(row) => return (died.elapsed(), row.get::<_, i32>(0) as u16, failed),
            Err(e) => {
                failed += 1;
                assert!(died.elapsed() < Duration::from_secs(90), "no write succeeded in 90 s: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Every idle client but the first (whose write measured the failover)
/// writes once, without reconnecting, and lands on node `new`.
async fn the_other_idle_clients_write_to(cluster: &RepmgrCluster, idle: &[tokio_postgres::Client], new: usize) {
    for (i, c) in idle.iter().enumerate().skip(1) {
        let port: i32 = c
            .query_one("INSERT INTO items (v, phase) VALUES ($1, 'after') RETURNING inet_server_port()", &[&(i as i32)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, cluster.node(new).port() as i32, "idle client {i} writes to the promoted node");
    }
}

/// The node of `cluster` listening on `port`.
fn index_of(cluster: &RepmgrCluster, port: u16) -> usize {
    cluster.nodes().iter().position(|n| n.port() == port).expect("a node's port")
}

/// Waits until node `i` streams from the node listening on `upstream_port`.
async fn streams_from(cluster: &RepmgrCluster, i: usize, upstream_port: u16, timeout: Duration) -> bool {
    let n = cluster.node(i).clone();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming' AND sender_port = {upstream_port}"
    );
    eventually(timeout, || n.query_one(&sql).is_ok_and(|v| v == "1")).await
}

/// Rows of each phase on node `i`, asked directly.
fn rows_on(cluster: &RepmgrCluster, i: usize, phase: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM items WHERE phase = '{phase}'");
    cluster.node(i).query_one(&sql).expect("count rows").parse().expect("a count")
}

/// The old primary (node 0) comes back as a primary (split brain): the
/// pooler keeps it quarantined and every later write lands on `new`; the old
/// primary never gets a row written after the failover.
async fn no_write_reaches_the_old_primary(cluster: &RepmgrCluster, pooler: &TestPooler, new: usize) {
    let old = cluster.node(0).clone();
    tokio::task::block_in_place(|| old.start()).expect("restart the old primary");
    assert_eq!(old.query_one("SELECT pg_is_in_recovery()").unwrap(), "f", "it believes it is a primary");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let p = pooler.pooler.clone();
    assert_eq!(p.primary_node(), new);
    assert_eq!(p.cluster().nodes[0].status, Status::Quarantine, "{:?}", p.cluster().nodes[0]);
    let client = pooler.connect("postgres").await;
    for i in 0..30 {
        let port: i32 = client
            .query_one("INSERT INTO items (v, phase) VALUES ($1, 'after') RETURNING inet_server_port()", &[&(2000 + i)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            port,
            cluster.node(new).port() as i32,
            "write {i} landed on node {}",
            index_of(cluster, port as u16)
        );
    }
    assert_eq!(rows_on(cluster, 0, "after"), 0, "no post-failover row on the old primary");
    assert!(rows_on(cluster, new, "after") >= 30);
}

/// repmgrd (failover=automatic, on both standbys) promotes a standby when
/// the primary is killed; the pooler, with no failover command, discovers
/// it; idle clients' next writes go there without reconnecting, and the
/// other standby follows (repmgrd's follow_command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repmgrd_promotes_on_primary_death_and_the_pooler_sends_idle_clients_writes_to_the_promoted_node() {
    let Some(mut cluster) = repmgr_cluster(RepmgrFailover::Automatic).await else { return };
    tokio::task::block_in_place(|| {
        cluster.start_repmgrd(1)?;
        cluster.start_repmgrd(2)
    })
    .expect("start repmgrd on the standbys");
    let config = repmgr_config(&cluster);
    assert!(config.failover.command.is_empty(), "passive discovery");
    let pooler = TestPooler::start(config, None).await;
    let mut idle = Vec::new();
    for i in 0..3 {
        let c = pooler.connect("postgres").await;
        c.execute("INSERT INTO items (v, phase) VALUES ($1, 'before')", &[&i]).await.unwrap();
        idle.push(c);
    }
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();

    let died = Instant::now();
    tokio::task::block_in_place(|| cluster.kill_node(0)).unwrap();
    let (took, port, failed) = first_write(&idle[0], died).await;
    println!(
        "repmgrd automatic failover (monitor_interval_secs=1, reconnect_attempts=2, reconnect_interval=1): \
         primary death to first successful write through the pooler: {} ms",
        took.as_millis()
    );
    assert_eq!(failed, 0, "the idle client's first write after the death succeeded");
    let new = index_of(&cluster, port);
    assert!(new == 1 || new == 2, "the write ran on a standby repmgrd promoted, not node {new}");
    assert_eq!(pooler.pooler.primary_node(), new);
    the_other_idle_clients_write_to(&cluster, &idle, new).await;
    assert_eq!(cluster.node(new).query_one("SELECT pg_is_in_recovery()").unwrap(), "f");
    assert_eq!(rows_on(&cluster, new, "after"), 3);
    assert_eq!(rows_on(&cluster, new, "before"), 3, "nothing acknowledged before the death was lost");
    // repmgr's own record of it.
    let events = cluster.repmgr(new, &["cluster", "event", "--event=repmgrd_failover_promote"]).unwrap();
    assert!(events.contains(&format!("node{}", new + 1)), "{events}");

    // The other standby follows the promoted node (repmgrd's follow_command)
    // and replays what was written there.
    let other = 3 - new;
    let follows = streams_from(&cluster, other, cluster.node(new).port(), Duration::from_secs(60)).await;
    assert!(follows, "node {other} follows node {new}\n{}", cluster.cluster_show());
    let o = cluster.node(other).clone();
    assert!(
        eventually(Duration::from_secs(30), || o
            .query_one("SELECT count(*) FROM items WHERE phase = 'after'")
            .is_ok_and(|n| n == "3"))
        .await
    );
    no_write_reaches_the_old_primary(&cluster, &pooler, new).await;
    println!("{}", cluster.cluster_show());
}

/// No repmgrd: the pooler promotes through the shipped repmgr_failover.sh
/// (`repmgr standby promote` on the node that received the most WAL), once,
/// and re-points the other standby with repmgr_follow.sh (`repmgr standby
/// follow`); writes land on the promoted node only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pooler_promotes_with_repmgr_failover_sh_once_and_the_other_standby_follows_with_repmgr_follow_sh() {
    let Some(cluster) = repmgr_cluster(RepmgrFailover::Manual).await else { return };
    let mut config = repmgr_config(&cluster);
    let ran = cluster.dir().join("failover-command-runs");
    config.failover.command = format!(
        "echo \"%d %m\" >> {} && {}",
        ran.display(),
        repmgr_script(&cluster, "repmgr_failover.sh", "%d %h %p %m %H %r")
    );
    config.failover.follow_primary_command = repmgr_script(&cluster, "repmgr_follow.sh", "%d %h %p %m %H %r");
    let pooler = TestPooler::start(config, None).await;
    let idle = pooler.connect("postgres").await;
    idle.execute("INSERT INTO items (v, phase) VALUES (1, 'before')", &[]).await.unwrap();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();

    let died = Instant::now();
    tokio::task::block_in_place(|| cluster.kill_node(0)).unwrap();
    let (took, port, failed) = first_write(&idle, died).await;
    println!(
        "pooler-driven failover through repmgr_failover.sh (health.period=100ms, max_retries=1, retry_delay=100ms): \
         primary death to first successful write through the pooler: {} ms",
        took.as_millis()
    );
    assert_eq!(failed, 0, "the idle client's first write after the death succeeded");
    let new = index_of(&cluster, port);
    assert!(new == 1 || new == 2, "the write ran on a promoted standby, not node {new}");
    assert_eq!(pooler.pooler.primary_node(), new);
    assert_eq!(cluster.node(new).query_one("SELECT pg_is_in_recovery()").unwrap(), "f");
    assert_eq!(rows_on(&cluster, new, "after"), 1);

    let other = 3 - new;
    let follows = streams_from(&cluster, other, cluster.node(new).port(), Duration::from_secs(60)).await;
    assert!(follows, "node {other} follows node {new}\n{}", cluster.cluster_show());
    // repmgr recorded one promotion (by repmgr standby promote, not repmgrd)
    // and the follow, and its metadata names the new upstream.
    let promotions = cluster.repmgr(new, &["cluster", "event", "--event=standby_promote"]).unwrap();
    assert_eq!(promotions.lines().filter(|l| l.contains("standby_promote")).count(), 1, "{promotions}");
    // repmgr standby follow records its event once it has seen the standby
    // stream, a moment after the standby does.
    let followed = eventually(Duration::from_secs(30), || {
        cluster
            .repmgr(new, &["cluster", "event", "--event=standby_follow"])
            .is_ok_and(|events| events.contains(&format!("node{}", other + 1)))
    })
    .await;
    assert!(followed, "repmgr recorded node {other}'s standby_follow\n{}", cluster.cluster_show());
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        format!("0 {new}\n"),
        "the failover command ran exactly once, for node 0, promoting node {new}"
    );
    no_write_reaches_the_old_primary(&cluster, &pooler, new).await;
    assert_eq!(std::fs::read_to_string(&ran).unwrap().lines().count(), 1, "and not again for the old primary's return");
    println!("{}", cluster.cluster_show());
}

/// repmgr_recover.sh rebuilds a failed primary that came back diverged (a
/// primary of its own, with a row the cluster never saw) as a standby of
/// the new primary with `repmgr standby clone --force`; the testkit's
/// `reclone_standby` does the same for a standby whose data directory was
/// wiped. Both then stream from the primary, hold its rows and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repmgr_recover_sh_rebuilds_a_diverged_old_primary_and_a_wiped_standby_from_the_current_primary() {
    let Some(mut cluster) = repmgr_cluster(RepmgrFailover::Manual).await else { return };
    cluster.node(0).query_one("INSERT INTO items (v, phase) VALUES (1, 'before')").unwrap();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    cluster.kill_node(0).unwrap();
    cluster.repmgr(1, &["standby", "promote"]).unwrap();
    cluster.repmgr(2, &["standby", "follow", "--upstream-node-id=2"]).unwrap();
    cluster.node(1).query_one("INSERT INTO items (v, phase) VALUES (2, 'after')").unwrap();
    // The old primary comes back on its own timeline and takes a write.
    cluster.node(0).start().unwrap();
    cluster.node(0).query_one("INSERT INTO items (v, phase) VALUES (3, 'diverged')").unwrap();

    // Through the scripts' remote mode (REPMGR_LOCAL=0), with a stand-in
    // for ssh that logs what it is asked and runs it here: each repmgr call
    // must arrive as one correctly quoted command line for the remote shell.
    let ssh_log = cluster.dir().join("ssh.log");
    let fake_ssh = cluster.dir().join("fake-ssh.sh");
    std::fs::write(
        &fake_ssh,
        format!(
            "echo \"$1 $2\" >> {}\nuser=${{1%@*}}\nif [ \"$(id -u)\" = 0 ]; then exec runuser -u \"$user\" -- sh -c \"$2\"; fi\nexec sh -c \"$2\"\n",
            ssh_log.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let script = format!(
        "REPMGR_LOCAL=0 REPMGR_SSH='sh {}' {}",
        fake_ssh.display(),
        repmgr_script(
            &cluster,
            "repmgr_recover.sh",
            &format!("0 127.0.0.1 {} 1 127.0.0.1 {}", cluster.node(0).port(), cluster.node(1).port()),
        )
    );
    let out = tokio::task::block_in_place(|| {
        Command::new("sh").arg("-c").arg(&script).output().expect("run repmgr_recover.sh")
    });
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", cluster.cluster_show());
    assert!(stdout.contains("rebuilt and registered as a standby of node 1"), "{stdout}");
    println!("repmgr_recover.sh rebuilt node 0 in {} ms", started.elapsed().as_millis());
    let calls = std::fs::read_to_string(&ssh_log).unwrap();
    let user = pooler_testkit::server_os_user().map(|u| u.0).unwrap_or_else(|| "postgres".into());
    let conf = format!("'-f' '{}'", cluster.conf(0).display());
    let expected = [
        "'node' 'service' '--action=stop'",
        "'standby' 'clone' '--force'",
        "'node' 'service' '--action=start'",
        "'standby' 'register' '--force'",
    ];
    assert_eq!(calls.lines().count(), expected.len(), "{calls}");
    for (line, what) in calls.lines().zip(expected) {
        assert!(
            line.starts_with(&format!("{user}@127.0.0.1 '")) && line.contains(&conf) && line.contains(what),
            "{what}: {calls}"
        );
    }
    assert!(
        streams_from(&cluster, 0, cluster.node(1).port(), Duration::from_secs(30)).await,
        "{}",
        cluster.cluster_show()
    );
    assert_eq!(cluster.node(0).query_one("SELECT pg_is_in_recovery()").unwrap(), "t");
    cluster.node(1).query_one("INSERT INTO items (v, phase) VALUES (4, 'after')").unwrap();
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();
    assert_eq!(rows_on(&cluster, 0, "after"), 2, "it replays the new primary");
    assert_eq!(rows_on(&cluster, 0, "diverged"), 0, "its own diverged write is gone");

    // A standby that lost its disk, rebuilt by the testkit helper.
    tokio::task::block_in_place(|| cluster.reclone_standby(2, 1)).expect("reclone node 2");
    assert!(streams_from(&cluster, 2, cluster.node(1).port(), Duration::from_secs(30)).await);
    assert_eq!(rows_on(&cluster, 2, "after"), 2);
    let show = cluster.repmgr(1, &["cluster", "show"]).unwrap();
    println!("{show}");
    for name in ["node1", "node3"] {
        let line = show.lines().find(|l| l.contains(name)).unwrap_or_default();
        assert!(line.contains("standby") && line.contains("running") && line.contains("node2"), "{show}");
    }
}

/// The pooler's configuration file for `cluster` (the [`repmgr_config`]
/// settings, `ops` as the console admin, load balancing with `weights`):
/// what RELOAD reads and the glue edits.
fn repmgr_config_text(cluster: &RepmgrCluster, weights: &[f64], extra: &str) -> String {
    let mut t = String::from(
        "[server]\nlog_connections = false\n[auth]\nmethod = \"trust\"\n[admin]\nadmin_users = [\"ops\"]\n\
         [pool]\nmode = \"transaction\"\n[health]\nperiod = \"100ms\"\nmax_retries = 1\nretry_delay = \"100ms\"\n\
         [failover]\nsearch_primary_node_timeout = \"60s\"\ncommand_timeout = \"120s\"\n",
    );
    t.push_str(extra);
    for (n, w) in cluster.nodes().iter().zip(weights.iter().chain(std::iter::repeat(&1.0))) {
        t.push_str(&format!(
            "\n[[nodes]]\nhost = \"{}\"\nport = {}\nweight = {w}\ndata_dir = \"{}\"\n",
            n.host(),
            n.port(),
            n.data_dir().display()
        ));
    }
    t
}

/// A directory the server OS user may write to (the glue edits the
/// pooler's configuration file as that user), removed when dropped.
struct SharedDir(std::path::PathBuf);

impl SharedDir {
    fn new(tag: &str) -> SharedDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pooler-repmgr-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        SharedDir(dir)
    }

    /// Writes `text` to `name`, writable by anyone.
    fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        path
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seed 004's glue with repmgr: repmgrd's promote_command is
/// `repmgr_promote_glue.sh`, which PAUSEs the pooler, runs `repmgr standby
/// promote`, removes the dead primary from the pooler's configuration file,
/// RELOADs and RESUMEs. Idle clients' writes go to the promoted node; the
/// old primary, back as a primary, gets none: the pooler no longer knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repmgrd_runs_the_pause_promote_reload_resume_glue_and_writes_resume_on_the_promoted_node_only() {
    let dir = SharedDir::new("glue");
    let pooler_port = pooler_testkit::free_port().unwrap();
    let path = dir.0.join("pooler.toml");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/failover/repmgr_promote_glue.sh");
    let bin = pooler_testkit::pg_bin_dir().unwrap();
    let glue = format!(
        "POOLER_CONSOLE=\"host=127.0.0.1 port={pooler_port} user=ops dbname=pooler\" POOLER_CONFIG={} PGBIN={} sh {script} {{conf}}",
        path.display(),
        bin.display()
    );
    let Some(mut cluster) = repmgr_cluster_with(RepmgrFailover::Automatic, |b| b.promote_command(&glue)).await else {
        return;
    };
    tokio::task::block_in_place(|| {
        cluster.start_repmgrd(1)?;
        cluster.start_repmgrd(2)
    })
    .expect("start repmgrd on the standbys");
    dir.write("pooler.toml", &repmgr_config_text(&cluster, &[], ""));
    let config = Config::load(&path).expect("a valid configuration");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", pooler_port)).await.unwrap();
    let pooler =
        TestPooler::serve_on(pooler_core::Pooler::builder(config).config_file(&path).build().unwrap(), listener.into())
            .await;
    let mut idle = Vec::new();
    for i in 0..3 {
        let c = pooler.connect("postgres").await;
        c.execute("INSERT INTO items (v, phase) VALUES ($1, 'before')", &[&i]).await.unwrap();
        idle.push(c);
    }
    tokio::task::block_in_place(|| cluster.wait_for_replication(Duration::from_secs(30))).unwrap();

    let died = Instant::now();
    tokio::task::block_in_place(|| cluster.kill_node(0)).unwrap();
    let (took, port, failed) = first_write(&idle[0], died).await;
    println!(
        "repmgrd with the glue: primary death to first successful write through the pooler: {} ms",
        took.as_millis()
    );
    assert_eq!(failed, 0, "the idle client's first write after the death succeeded");
    let new = index_of(&cluster, port);
    assert!(new == 1 || new == 2, "the write ran on the promoted standby, not node {new}");
    // The glue ran: the pooler's file no longer names the old primary, and
    // the RELOAD removed it.
    let p = pooler.pooler.clone();
    assert!(
        eventually(Duration::from_secs(30), || p.cluster().nodes[0].status == Status::Removed).await,
        "{:?}\n{}",
        p.cluster().nodes[0],
        std::fs::read_to_string(cluster.repmgr_log(new)).unwrap_or_default()
    );
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(!file.contains(&format!("port = {}\n", cluster.node(0).port())), "{file}");
    assert!(!p.is_paused("postgres"), "the glue resumed the pooler");
    the_other_idle_clients_write_to(&cluster, &idle, new).await;
    // The old primary comes back as a primary: the pooler does not know it.
    let old = cluster.node(0).clone();
    tokio::task::block_in_place(|| old.start()).expect("restart the old primary");
    let client = pooler.connect("postgres").await;
    for i in 0..30 {
        let port: i32 = client
            .query_one("INSERT INTO items (v, phase) VALUES ($1, 'after') RETURNING inet_server_port()", &[&(3000 + i)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, cluster.node(new).port() as i32, "write {i}");
    }
    assert_eq!(rows_on(&cluster, 0, "after"), 0, "no post-failover row on the old primary");
}

/// RECOVER NODE through `repmgr_recover.sh` (`repmgr standby clone
/// --force`): a standby killed and wiped is rebuilt from the primary,
/// registered again, attached, and serves reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_node_through_repmgr_standby_clone_brings_a_wiped_standby_back_behind_the_pooler() {
    let Some(cluster) = repmgr_cluster(RepmgrFailover::Manual).await else { return };
    let dir = SharedDir::new("recover");
    let recovery = format!(
        "[routing]\nload_balance = true\n[recovery]\ncommand = '{}'\nstream_timeout = \"60s\"\n",
        repmgr_script(&cluster, "repmgr_recover.sh", "%d %h %p %m %H %r")
    );
    // Reads only on the standbys.
    let path = dir.write("pooler.toml", &repmgr_config_text(&cluster, &[0.0, 0.0, 1.0], &recovery));
    let config = Config::load(&path).expect("a valid configuration");
    let pooler = TestPooler::start_built(pooler_core::Pooler::builder(config).config_file(&path)).await;
    let app = pooler.connect("postgres").await;
    let read = || async {
        let row = app.query_one("SELECT inet_server_port()", &[]).await.expect("a read");
        row.get::<_, i32>(0) as u16
    };
    assert_eq!(read().await, cluster.node(2).port());

    tokio::task::block_in_place(|| cluster.kill_node(2)).unwrap();
    let data = cluster.node(2).data_dir().to_path_buf();
    wipe_contents(&data);
    let p = pooler.pooler.clone();
    assert!(eventually(Duration::from_secs(10), || p.cluster().nodes[2].status == Status::Down).await);
    app.execute("INSERT INTO items (v, phase) VALUES (7, 'after')", &[]).await.unwrap();

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(120), p.recover_node(2))
        .await
        .expect("RECOVER NODE returns")
        .unwrap_or_else(|e| panic!("RECOVER NODE: {e}\n{}", cluster.cluster_show()));
    println!("RECOVER NODE through repmgr standby clone: {} ms", started.elapsed().as_millis());
    assert!(eventually(Duration::from_secs(10), || p.cluster().nodes[2].status == Status::Up).await);
    let mut back = false;
    for _ in 0..50 {
        if read().await == cluster.node(2).port() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the rebuilt standby serves reads again");
    assert_eq!(rows_on(&cluster, 2, "after"), 1, "with what was written while it was gone");
    assert!(cluster.cluster_show().contains("node3"), "{}", cluster.cluster_show());
}
