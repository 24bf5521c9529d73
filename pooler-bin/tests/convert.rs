//! `pooler convert` end to end: the real binary on a pgbouncer.ini (with its
//! userlist.txt) and on a pgpool.conf (with its pool_passwd) written into a
//! temp dir; the TOML it prints loads as a Config and passes `pooler check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pooler_core::config::{AuthMethod, PoolMode};
use pooler_core::Config;

const BIN: &str = env!("CARGO_BIN_EXE_pooler");

/// A temp dir removed on drop, even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let d = std::env::temp_dir().join(format!("pooler-convert-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run pooler")
}

/// Writes the printed TOML next to nothing of the source, loads it, and
/// runs `pooler check` on it (which reads the password file it names).
fn load_and_check(out: &Output, elsewhere: &Path) -> Config {
    let toml = String::from_utf8(out.stdout.clone()).unwrap();
    let file = elsewhere.join("pooler.toml");
    std::fs::write(&file, &toml).unwrap();
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let check = run(&["check", "--config", file.to_str().unwrap()]);
    assert!(check.status.success(), "pooler check: {}\n{toml}", String::from_utf8_lossy(&check.stderr));
    config
}

#[test]
fn a_pgbouncer_ini_and_its_userlist_convert_to_a_config_pooler_check_accepts() {
    let src = TempDir::new("pgbouncer");
    let dst = TempDir::new("pgbouncer-out");
    std::fs::write(
        src.0.join("userlist.txt"),
        "\"app\" \"md5c1b1dd2a1c0e2a2a0d8f1a1f0b7c6c2e\"\n\"ops\" \"plain secret\"\n",
    )
    .unwrap();
    std::fs::write(
        src.0.join("pgbouncer.ini"),
        "[databases]\napp = host=127.0.0.1 port=5432 pool_size=30\n* = host=127.0.0.1 port=5432\n\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 6543\nunix_socket_dir =\nauth_type = md5\n\
         auth_file = userlist.txt\npool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 500\n\
         server_idle_timeout = 120\nadmin_users = ops\nlogfile = /var/log/pgbouncer.log\n",
    )
    .unwrap();
    let ini = src.0.join("pgbouncer.ini");
    let out = run(&["convert", ini.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 settings have no equivalent"), "{stderr}");
    let c = load_and_check(&out, &dst.0);
    assert_eq!(c.server.listen, "127.0.0.1:6543");
    assert_eq!((c.pool.mode, c.pool.size, c.pool.effective("u", "app").size), (PoolMode::Transaction, 10, 30));
    assert_eq!(c.server.max_client_connections, 500);
    assert_eq!(c.auth.method, AuthMethod::Md5);
    assert_eq!(c.auth.password_file, Some(src.0.join("userlist.txt")));
    assert_eq!(c.admin.admin_users, ["ops"]);
    assert_eq!((c.nodes.len(), c.nodes[0].host.as_str(), c.nodes[0].port), (1, "127.0.0.1", 5432));
}

#[test]
fn a_pgpool_conf_converts_to_a_config_pooler_check_accepts() {
    let src = TempDir::new("pgpool");
    let dst = TempDir::new("pgpool-out");
    std::fs::write(src.0.join("pool_passwd"), "app:md5c1b1dd2a1c0e2a2a0d8f1a1f0b7c6c2e\npostgres:secret\n").unwrap();
    std::fs::write(
        src.0.join("pgpool.conf"),
        "backend_clustering_mode = 'streaming_replication'\nlisten_addresses = '127.0.0.1'\nport = 9999\n\
         unix_socket_directories = ''\n\
         backend_hostname0 = '10.0.0.1'\nbackend_port0 = 5432\nbackend_weight0 = 1\n\
         backend_data_directory0 = '/data/pg0'\nbackend_flag0 = 'ALLOW_TO_FAILOVER'\n\
         backend_hostname1 = '10.0.0.2'\nbackend_port1 = 5432\nbackend_weight1 = 3\n\
         backend_data_directory1 = '/data/pg1'\n\
         num_init_children = 64\nmax_pool = 4\nload_balance_mode = on\nhealth_check_period = 5\n\
         health_check_user = 'postgres'\nsr_check_user = 'postgres'\n\
         failover_command = '/etc/pgpool-II/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S'\n\
         use_watchdog = on   # no equivalent yet\n",
    )
    .unwrap();
    let conf = src.0.join("pgpool.conf");
    let out = run(&["convert", conf.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 settings have no equivalent"), "{stderr}");
    let c = load_and_check(&out, &dst.0);
    let nodes: Vec<(&str, f64)> = c.nodes.iter().map(|n| (n.host.as_str(), n.weight)).collect();
    assert_eq!(nodes, [("10.0.0.1", 1.0), ("10.0.0.2", 3.0)]);
    assert_eq!(c.nodes[1].data_dir.as_deref(), Some("/data/pg1"));
    assert!(c.routing.load_balance);
    assert_eq!((c.pool.mode, c.pool.size, c.server.max_client_connections), (PoolMode::Session, 64, 64));
    assert_eq!(c.failover.command, "/etc/pgpool-II/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S");
    assert_eq!(c.auth.password_file, Some(src.0.join("pool_passwd")));
    assert_eq!(c.server.listen, "127.0.0.1:9999");
    // --from overrides the guess from the content.
    let out = run(&["convert", conf.to_str().unwrap(), "--from", "pgbouncer"]);
    assert!(!out.status.success(), "a pgpool.conf is not an ini file");
}

#[test]
fn unreadable_unparseable_or_unrecognised_input_fails_with_a_clear_message() {
    let dir = TempDir::new("bad");
    let out = run(&["convert", dir.0.join("missing.ini").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = dir.0.join("pgbouncer.ini");
    std::fs::write(&bad, "[databases]\napp = host=h port=notaport\n").unwrap();
    let out = run(&["convert", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pgbouncer.ini:2") && stderr.contains("notaport"), "{stderr}");
    let unknown = dir.0.join("settings.conf");
    std::fs::write(&unknown, "port = 1\n").unwrap();
    let out = run(&["convert", unknown.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--from"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on standard output on failure");
}
