//! What each `SHOW` answers: tables built from the pooler's state, with
//! pgbouncer's column names and order where the meaning is the same (so
//! its exporter and dashboards read them), pgpool's for `SHOW pool_nodes`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::command::Show;
use super::table::{Kind, Kind::Int, Kind::Text, Table, Value};
use crate::clients::{ClientInfo, ClientState};
use crate::runtime::Shared;

/// The table `SHOW <what>` answers.
pub(crate) fn show(shared: &Shared, what: Show) -> Table {
    match what {
        Show::Help => help(),
        Show::Pools => pools(shared),
        Show::Clients => clients(shared),
        Show::Servers => servers(shared),
        Show::Stats => stats(shared),
        Show::StatsTotals => stats_totals(shared),
        Show::StatsAverages => stats_averages(shared),
        Show::Databases => databases(shared),
        Show::Users => users(shared),
        Show::Config => config(shared),
        Show::Lists => lists(shared),
        Show::Mem => mem(shared),
        Show::Version => version(),
        Show::State => state(shared),
        Show::PreparedStatements => prepared_statements(shared),
        Show::Nodes => nodes(shared),
        Show::PoolNodes => pool_nodes(shared),
        Show::PoolProcesses => pool_processes(shared),
        Show::Ha => super::group::ha(shared),
        Show::HaViews => super::group::ha_views(shared),
    }
}

/// `SHOW HELP`'s lines.
pub(crate) const HELP: &[&str] = &[
    "SHOW HELP|POOLS|CLIENTS|SERVERS|STATS|STATS_TOTALS|STATS_AVERAGES|DATABASES|USERS",
    "SHOW CONFIG|LISTS|MEM|VERSION|STATE|PREPARED_STATEMENTS|NODES|POOL_NODES|POOL_PROCESSES|HA|HA_VIEWS",
    "KILL_CLIENT id | KILL db | RECONNECT [db] | DISABLE db | ENABLE db | PAUSE [db] | RESUME [db] | RELOAD",
    "SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]",
    "ATTACH NODE n | DETACH NODE n | PROMOTE NODE n [SWITCHOVER] | RECOVER NODE n",
    "not available yet: SUSPEND | WAIT_CLOSE [db] | SET key = value",
];

fn help() -> Table {
    let mut t = Table::new(&[("help", Text)]);
    for line in HELP {
        t.push(vec![(*line).into()]);
    }
    t
}

pub(super) fn epoch(t: SystemTime) -> String {
    // ISO 8601 in UTC, without a time-zone database: days from the epoch
    // by the civil-from-days algorithm.
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Per (database, user): what the pools (summed over nodes) and the
/// clients say.
#[derive(Default)]
struct PoolRow {
    cl_active: usize,
    cl_waiting: usize,
    sv_active: usize,
    sv_idle: usize,
    maxwait: Duration,
    mode: Option<crate::config::PoolMode>,
}

fn pool_rows(shared: &Shared) -> BTreeMap<(String, String), PoolRow> {
    let mut rows: BTreeMap<(String, String), PoolRow> = BTreeMap::new();
    for p in shared.pools.all() {
        let key = p.key();
        let r = rows.entry((key.database.clone(), key.user.clone())).or_default();
        r.sv_active += p.active_count();
        r.sv_idle += p.idle_count();
        r.mode = Some(p.settings().mode);
    }
    for c in shared.clients.all() {
        let r = rows.entry((c.database.clone(), c.user.clone())).or_default();
        match c.state() {
            ClientState::Waiting => {
                r.cl_waiting += 1;
                r.maxwait = r.maxwait.max(c.waiting_for());
            }
            _ => r.cl_active += 1,
        }
    }
    rows
}

fn mode_of(shared: &Shared, database: &str, user: &str, known: Option<crate::config::PoolMode>) -> String {
    if super::is_console(database) {
        return "statement".into();
    }
    known.unwrap_or_else(|| shared.config().pool.mode_for(user, database)).to_string()
}

fn pools(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", Text),
        ("user", Text),
        ("cl_active", Int),
        ("cl_waiting", Int),
        ("cl_active_cancel_req", Int),
        ("cl_waiting_cancel_req", Int),
        ("sv_active", Int),
        ("sv_active_cancel", Int),
        ("sv_being_canceled", Int),
        ("sv_idle", Int),
        ("sv_used", Int),
        ("sv_tested", Int),
        ("sv_login", Int),
        ("maxwait", Int),
        ("maxwait_us", Int),
        ("pool_mode", Text),
        ("load_balance_hosts", Text),
    ]);
    for ((database, user), r) in pool_rows(shared) {
        let mode = mode_of(shared, &database, &user, r.mode);
        t.push(vec![
            database.into(),
            user.into(),
            r.cl_active.into(),
            r.cl_waiting.into(),
            0i64.into(),
            0i64.into(),
            r.sv_active.into(),
            0i64.into(),
            0i64.into(),
            r.sv_idle.into(),
            0i64.into(),
            0i64.into(),
            0i64.into(),
            (r.maxwait.as_secs()).into(),
            i64::from(r.maxwait.subsec_micros()).into(),
            mode.into(),
            Value::Null,
        ]);
    }
    t
}

/// Columns shared by `SHOW CLIENTS` and `SHOW SERVERS`.
const CONNECTION_COLUMNS: &[(&str, Kind)] = &[
    ("type", Text),
    ("user", Text),
    ("database", Text),
    ("replication", Text),
    ("state", Text),
    ("addr", Text),
    ("port", Int),
    ("local_addr", Text),
    ("local_port", Int),
    ("connect_time", Text),
    ("request_time", Text),
    ("wait", Int),
    ("wait_us", Int),
    ("close_needed", Int),
    ("ptr", Text),
    ("link", Text),
    ("remote_pid", Int),
    ("tls", Text),
    ("application_name", Text),
    ("prepared_statements", Int),
    ("id", Int),
];

fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(CONNECTION_COLUMNS);
    t.columns.push(("node", Int));
    for c in shared.clients.all() {
        t.push(client_row(&c));
    }
    t
}

fn client_row(c: &ClientInfo) -> Vec<Value> {
    let wait = c.waiting_for();
    let connected = epoch(c.connected);
    vec![
        "C".into(),
        c.user.as_str().into(),
        c.database.as_str().into(),
        "none".into(),
        c.state().as_str().into(),
        c.peer.map(|a| a.ip().to_string()).unwrap_or_else(|| "unix".into()).into(),
        c.peer.map(|a| a.port()).unwrap_or(0).into(),
        c.local.map(|a| a.ip().to_string()).into(),
        c.local.map(|a| a.port()).into(),
        connected.clone().into(),
        connected.into(),
        wait.as_secs().into(),
        i64::from(wait.subsec_micros()).into(),
        i64::from(c.killed()).into(),
        format!("{:x}", c.id).into(),
        Value::Null,
        0i64.into(),
        // pgbouncer's form is version/cipher/key exchange; rustls names the
        // cipher suite, which for TLS 1.3 leaves the key exchange out.
        c.tls.as_deref().unwrap_or("").into(),
        c.application_name.as_str().into(),
        0i64.into(),
        c.id.into(),
        c.node().into(),
    ]
}

fn servers(shared: &Shared) -> Table {
    let mut t = Table::new(CONNECTION_COLUMNS);
    t.columns.push(("node", Int));
    let now = SystemTime::now();
    for p in shared.pools.all() {
        let key = p.key();
        let addr = p.addr();
        let row = |state: &str,
                   pid: Option<i32>,
                   age: Option<Duration>,
                   idle: Option<Duration>,
                   local: Option<std::net::SocketAddr>| {
            vec![
                "S".into(),
                key.user.as_str().into(),
                key.database.as_str().into(),
                "none".into(),
                state.into(),
                addr.host.as_str().into(),
                addr.port.into(),
                local.map(|a| a.ip().to_string()).into(),
                local.map(|a| a.port()).into(),
                age.map(|a| epoch(now - a)).into(),
                idle.map(|i| epoch(now - i)).into(),
                0i64.into(),
                0i64.into(),
                0i64.into(),
                Value::Null,
                Value::Null,
                pid.map(i64::from).into(),
                "".into(),
                "".into(),
                0i64.into(),
                Value::Null,
                key.node.into(),
            ]
        };
        for s in p.idle_servers() {
            t.push(row("idle", Some(s.pid), Some(s.age), Some(s.idle), s.local));
        }
        // Lent connections belong to their relay; the pool knows only how
        // many there are.
        for _ in 0..p.active_count() {
            t.push(row("active", None, None, None, None));
        }
    }
    t
}

/// What SHOW STATS counts for one database, summed over its pools (every
/// node, every user).
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    transactions: u64,
    queries: u64,
    assignments: u64,
    received: u64,
    sent: u64,
    wait_us: u64,
    transaction_us: u64,
    query_us: u64,
}

impl Figures {
    /// Each figure divided by `by` (per second, per transaction...).
    fn per(self, by: u64) -> Figures {
        let by = by.max(1);
        Figures {
            transactions: self.transactions / by,
            queries: self.queries / by,
            assignments: self.assignments / by,
            received: self.received / by,
            sent: self.sent / by,
            wait_us: self.wait_us / by,
            transaction_us: self.transaction_us / by,
            query_us: self.query_us / by,
        }
    }
}

/// Per database: the pools' counters, summed.
fn per_database(shared: &Shared) -> BTreeMap<String, Figures> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out: BTreeMap<String, Figures> = BTreeMap::new();
    for p in shared.pools.all() {
        let e = out.entry(p.key().database.clone()).or_default();
        let s = p.stats();
        e.transactions += s.transactions.load(Relaxed);
        e.queries += s.queries.load(Relaxed);
        e.assignments += s.checkouts.load(Relaxed);
        e.received += s.received.load(Relaxed);
        e.sent += s.sent.load(Relaxed);
        e.wait_us += s.wait_us.load(Relaxed);
        e.transaction_us += s.transaction_us.load(Relaxed);
        e.query_us += s.query_us.load(Relaxed);
    }
    out
}

/// The figures of one `SHOW STATS` family row, totals first, then (for
/// SHOW STATS) the averages per second. Transactions and requests are
/// counted at each ReadyForQuery the client gets, bytes as they cross the
/// client's socket, the wait for a free server connection as it happens;
/// the times spent in transactions and queries with `metrics.durations`
/// (0 without: two clock reads per request); parse and bind counts are
/// not kept (0).
fn stats_row(database: String, totals: Figures, averages: Option<Figures>) -> Vec<Value> {
    let mut row: Vec<Value> = vec![database.into()];
    // xact_count, query_count, server_assignment_count, received, sent,
    // xact_time, query_time, wait_time, client_parse, server_parse, bind
    let figures = |f: Figures| -> Vec<Value> {
        let mut v: Vec<Value> = vec![
            f.transactions.into(),
            f.queries.into(),
            f.assignments.into(),
            f.received.into(),
            f.sent.into(),
            f.transaction_us.into(),
            f.query_us.into(),
            f.wait_us.into(),
        ];
        v.extend(std::iter::repeat_with(|| Value::Int(0)).take(3));
        v
    };
    row.extend(figures(totals));
    if let Some(avg) = averages {
        row.extend(figures(avg));
    }
    row
}

const STATS_FIGURES: &[&str] = &[
    "xact_count",
    "query_count",
    "server_assignment_count",
    "received",
    "sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
];

fn stats(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("database", Text),
        ("total_xact_count", Int),
        ("total_query_count", Int),
        ("total_server_assignment_count", Int),
        ("total_received", Int),
        ("total_sent", Int),
        ("total_xact_time", Int),
        ("total_query_time", Int),
        ("total_wait_time", Int),
        ("total_client_parse_count", Int),
        ("total_server_parse_count", Int),
        ("total_bind_count", Int),
        ("avg_xact_count", Int),
        ("avg_query_count", Int),
        ("avg_server_assignment_count", Int),
        ("avg_recv", Int),
        ("avg_sent", Int),
        ("avg_xact_time", Int),
        ("avg_query_time", Int),
        ("avg_wait_time", Int),
        ("avg_client_parse_count", Int),
        ("avg_server_parse_count", Int),
        ("avg_bind_count", Int),
    ]);
    let secs = uptime_secs(shared);
    for (db, f) in per_database(shared) {
        t.push(stats_row(db, f, Some(f.per(secs))));
    }
    t
}

fn uptime_secs(shared: &Shared) -> u64 {
    shared.control.started.elapsed().map(|d| d.as_secs()).unwrap_or(0).max(1)
}

fn stats_columns() -> Vec<(&'static str, Kind)> {
    let mut c = vec![("database", Text)];
    for f in STATS_FIGURES {
        // pgbouncer names the byte columns bytes_received / bytes_sent here.
        let name = match *f {
            "received" => "bytes_received",
            "sent" => "bytes_sent",
            other => other,
        };
        c.push((name, Int));
    }
    c
}

fn stats_totals(shared: &Shared) -> Table {
    let mut t = Table::new(&stats_columns());
    for (db, f) in per_database(shared) {
        t.push(stats_row(db, f, None));
    }
    t
}

fn stats_averages(shared: &Shared) -> Table {
    let mut t = Table::new(&stats_columns());
    let secs = uptime_secs(shared);
    for (db, f) in per_database(shared) {
        t.push(stats_row(db, f.per(secs), None));
    }
    t
}

/// Every database the pooler knows: configured overrides, pools, clients.
fn known_databases(shared: &Shared) -> Vec<String> {
    let mut names: std::collections::BTreeSet<String> = shared.config().pool.databases.keys().cloned().collect();
    names.extend(shared.pools.all().iter().map(|p| p.key().database.clone()));
    names.extend(shared.clients.all().iter().map(|c| c.database.clone()));
    names.insert("pooler".into());
    names.into_iter().collect()
}

fn databases(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", Text),
        ("host", Text),
        ("port", Int),
        ("database", Text),
        ("force_user", Text),
        ("pool_size", Int),
        ("min_pool_size", Int),
        ("reserve_pool_size", Int),
        ("server_lifetime", Int),
        ("pool_mode", Text),
        ("load_balance_hosts", Text),
        ("max_connections", Int),
        ("current_connections", Int),
        ("max_client_connections", Int),
        ("current_client_connections", Int),
        ("paused", Int),
        ("disabled", Int),
    ]);
    let pools = shared.pools.all();
    let clients = shared.clients.all();
    let primary = shared.router.snapshot();
    let primary = primary.nodes.get(primary.primary);
    for db in known_databases(shared) {
        let console = super::is_console(&db);
        let s = shared.config().pool.effective("", &db);
        let servers: usize =
            pools.iter().filter(|p| p.key().database == db).map(|p| p.active_count() + p.idle_count()).sum();
        let clients = clients.iter().filter(|c| c.database == db).count();
        t.push(vec![
            db.clone().into(),
            if console { Value::Null } else { primary.map(|n| n.host.clone()).into() },
            if console { Value::Null } else { primary.map(|n| n.port).into() },
            db.clone().into(),
            Value::Null,
            if console { 2usize } else { s.size }.into(),
            if console { 0 } else { s.min_size }.into(),
            if console { 0 } else { s.reserve_size }.into(),
            s.server_lifetime.as_secs().into(),
            if console { "statement".to_string() } else { s.mode.to_string() }.into(),
            Value::Null,
            0i64.into(),
            servers.into(),
            0i64.into(),
            clients.into(),
            (!console && shared.control.pause.holds(&db)).into(),
            shared.control.is_disabled(&db).into(),
        ]);
    }
    t
}

fn users(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("name", Text),
        ("pool_size", Int),
        ("reserve_pool_size", Int),
        ("pool_mode", Text),
        ("max_user_connections", Int),
        ("current_connections", Int),
        ("max_user_client_connections", Int),
        ("current_client_connections", Int),
    ]);
    let pools = shared.pools.all();
    let clients = shared.clients.all();
    let mut names: std::collections::BTreeSet<String> = shared.config().pool.users.keys().cloned().collect();
    names.extend(pools.iter().map(|p| p.key().user.clone()));
    names.extend(clients.iter().map(|c| c.user.clone()));
    for user in names {
        let s = shared.config().pool.effective(&user, "");
        let servers: usize =
            pools.iter().filter(|p| p.key().user == user).map(|p| p.active_count() + p.idle_count()).sum();
        let n = clients.iter().filter(|c| c.user == user).count();
        let override_mode = shared.config().pool.users.get(&user).and_then(|o| o.mode);
        t.push(vec![
            user.clone().into(),
            s.size.into(),
            s.reserve_size.into(),
            override_mode.map(|m| m.to_string()).into(),
            0i64.into(),
            servers.into(),
            0i64.into(),
            n.into(),
        ]);
    }
    t
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The settings `SHOW CONFIG` lists, as (key, value in force, default).
fn settings(c: &crate::Config) -> Vec<(&'static str, String, String)> {
    let d = crate::Config::with_nodes(Vec::new());
    let pair = |f: &dyn Fn(&crate::Config) -> String| (f(c), f(&d));
    let mut out = Vec::new();
    macro_rules! row {
        ($key:literal, $f:expr) => {{
            let (v, dv) = pair(&$f);
            out.push(($key, v, dv));
        }};
    }
    row!("server.listen", |c| c.server.listen.clone());
    row!("server.max_client_connections", |c| c.server.max_client_connections.to_string());
    row!("server.client_login_timeout", |c| secs(c.server.client_login_timeout));
    row!("server.shutdown_timeout", |c| secs(c.server.shutdown_timeout));
    row!("server.max_message_size", |c| c.server.max_message_size.to_string());
    row!("server.log_connections", |c| c.server.log_connections.to_string());
    row!("server.log_statements", |c| c.server.log_statements.to_string());
    row!("server.worker_threads", |c| c.server.worker_threads.to_string());
    row!("pool.mode", |c| c.pool.mode.to_string());
    row!("pool.size", |c| c.pool.size.to_string());
    row!("pool.min_size", |c| c.pool.min_size.to_string());
    row!("pool.reserve_size", |c| c.pool.reserve_size.to_string());
    row!("pool.reserve_timeout", |c| secs(c.pool.reserve_timeout));
    row!("pool.connect_timeout", |c| secs(c.pool.connect_timeout));
    row!("pool.checkout_timeout", |c| secs(c.pool.checkout_timeout));
    row!("pool.server_lifetime", |c| secs(c.pool.server_lifetime));
    row!("pool.server_idle_timeout", |c| secs(c.pool.server_idle_timeout));
    row!("pool.client_idle_timeout", |c| secs(c.pool.client_idle_timeout));
    row!("pool.idle_transaction_timeout", |c| secs(c.pool.idle_transaction_timeout));
    row!("pool.response_timeout", |c| secs(c.pool.response_timeout));
    row!("pool.reset_query_list", |c| c.pool.reset_query_list.join("; "));
    row!("pool.check_query", |c| c.pool.check_query.clone());
    row!("pool.check_delay", |c| secs(c.pool.check_delay));
    row!("auth.method", |c| format!("{:?}", c.auth.method).to_lowercase());
    row!("routing.load_balance", |c| c.routing.load_balance.to_string());
    row!("routing.read_your_writes", |c| c.routing.read_your_writes.to_string());
    row!("routing.statement_level_load_balance", |c| c.routing.statement_level_load_balance.to_string());
    row!("health.period", |c| secs(c.health.period));
    row!("health.timeout", |c| secs(c.health.timeout));
    row!("health.max_retries", |c| c.health.max_retries.to_string());
    row!("health.lag_threshold_bytes", |c| c.health.lag_threshold_bytes.to_string());
    row!("health.lag_threshold", |c| secs(c.health.lag_threshold));
    row!("failover.auto_failback", |c| c.failover.auto_failback.to_string());
    row!("failover.failover_on_backend_error", |c| c.failover.failover_on_backend_error.to_string());
    row!("failover.search_primary_node_timeout", |c| secs(c.failover.search_primary_node_timeout));
    row!("admin.admin_users", |c| c.admin.admin_users.join(","));
    row!("admin.stats_users", |c| c.admin.stats_users.join(","));
    row!("metrics.listen", |c| c.metrics.listen.clone().unwrap_or_default());
    out
}

fn config(shared: &Shared) -> Table {
    let mut t = Table::new(&[("key", Text), ("value", Text), ("default", Text), ("changeable", Text)]);
    for (key, value, default) in settings(&shared.config()) {
        // Nothing changes live yet: configuration reload is a later step.
        t.push(vec![key.into(), value.into(), default.into(), "no".into()]);
    }
    t
}

fn lists(shared: &Shared) -> Table {
    let mut t = Table::new(&[("list", Text), ("items", Int)]);
    let pools = shared.pools.all();
    let clients = shared.clients.all();
    let users: std::collections::BTreeSet<_> = pools.iter().map(|p| p.key().user.clone()).collect();
    let waiting = clients.iter().filter(|c| c.state() == ClientState::Waiting).count();
    let idle: usize = pools.iter().map(|p| p.idle_count()).sum();
    let used: usize = pools.iter().map(|p| p.active_count()).sum();
    for (name, n) in [
        ("databases", known_databases(shared).len()),
        ("users", users.len()),
        ("pools", pools.len()),
        ("free_clients", 0),
        ("used_clients", clients.len()),
        ("login_clients", waiting),
        ("free_servers", idle),
        ("used_servers", used),
        ("nodes", shared.node_count()),
    ] {
        t.push(vec![name.into(), n.into()]);
    }
    t
}

fn mem(shared: &Shared) -> Table {
    // pgbouncer lists its slab caches; the pooler has none, so this lists
    // what it holds per kind of object, with the size of one.
    let mut t = Table::new(&[("name", Text), ("size", Int), ("used", Int), ("free", Int), ("memtotal", Int)]);
    let clients = shared.clients.all().len();
    let pools = shared.pools.all();
    let servers: usize = pools.iter().map(|p| p.idle_count() + p.active_count()).sum();
    let statements = shared.statements.list().len();
    for (name, size, used) in [
        ("client_registry", std::mem::size_of::<ClientInfo>(), clients),
        ("pool_cache", std::mem::size_of::<crate::pool::Pool>(), pools.len()),
        ("server_cache", std::mem::size_of::<crate::backend::ServerConn>(), servers),
        ("prepared_statement_cache", std::mem::size_of::<crate::prepared::StatementDef>(), statements),
    ] {
        t.push(vec![name.into(), size.into(), used.into(), 0i64.into(), (size * used).into()]);
    }
    // The relay buffers, in bytes, against server.max_memory (free: what is
    // left under it; 0 without a limit), and the work refused past it.
    let (held, limit) = (shared.memory.held(), shared.memory.limit());
    t.push(vec!["buffers".into(), 1i64.into(), held.into(), limit.saturating_sub(held).into(), held.into()]);
    t.push(vec!["max_memory".into(), 1i64.into(), limit.into(), 0i64.into(), limit.into()]);
    t.push(vec!["memory_refusals".into(), 0i64.into(), shared.memory.refusals().into(), 0i64.into(), 0i64.into()]);
    t
}

fn version() -> Table {
    let mut t = Table::new(&[("version", Text)]);
    t.push(vec![format!("pooler {}", env!("CARGO_PKG_VERSION")).into()]);
    t
}

fn state(shared: &Shared) -> Table {
    let mut t = Table::new(&[("key", Text), ("value", Text)]);
    let running = *shared.phase.borrow() == crate::runtime::Phase::Running;
    let paused = if shared.control.pause.all_paused() { "yes" } else { "no" };
    for (k, v) in [("active", if running { "yes" } else { "no" }), ("paused", paused), ("suspended", "no")] {
        t.push(vec![k.into(), v.into()]);
    }
    t
}

fn prepared_statements(shared: &Shared) -> Table {
    let mut t = Table::new(&[("name", Text), ("query", Text), ("parameters", Int), ("valid", Int), ("clients", Int)]);
    for def in shared.statements.list() {
        let text_end = def.body.iter().position(|&b| b == 0).unwrap_or(def.body.len());
        let query = String::from_utf8_lossy(&def.body[..text_end]).into_owned();
        let params =
            def.body.get(text_end + 1..text_end + 3).map(|b| i64::from(i16::from_be_bytes([b[0], b[1]]))).unwrap_or(0);
        let holders = std::sync::Arc::strong_count(&def).saturating_sub(1);
        t.push(vec![
            def.server_name.as_str().into(),
            query.into(),
            params.into(),
            def.valid.load(std::sync::atomic::Ordering::Relaxed).into(),
            holders.into(),
        ]);
    }
    t
}

fn nodes(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("node", Int),
        ("host", Text),
        ("port", Int),
        ("status", Text),
        ("role", Text),
        ("pg_role", Text),
        ("pg_up", Int),
        ("weight", Text),
        ("lag_bytes", Int),
        ("lag_seconds", Text),
        ("lagging", Int),
        ("lsn", Text),
        ("routed", Int),
        ("reads", Int),
        ("outstanding", Int),
        ("replication_state", Text),
        ("sync_state", Text),
        ("detached", Int),
        ("last_status_change", Text),
        ("cause", Text),
        ("state_from", Text),
        ("down_votes", Text),
    ]);
    let snapshot = shared.router.snapshot();
    let stats = shared.router.node_stats();
    let group = super::group::NodeColumns::of(shared);
    for n in &snapshot.nodes {
        let s = stats.get(n.id);
        t.push(vec![
            n.id.into(),
            n.host.as_str().into(),
            n.port.into(),
            n.status.as_str().into(),
            n.role.as_str().into(),
            n.pg_role.as_str().into(),
            n.pg_up.into(),
            format!("{}", n.weight).into(),
            n.lag_bytes.into(),
            format!("{:.3}", n.lag_time.as_secs_f64()).into(),
            n.lagging.into(),
            crate::lsn::format_lsn(n.lsn).into(),
            s.map(|s| s.routed).unwrap_or(0).into(),
            s.map(|s| s.reads).unwrap_or(0).into(),
            s.map(|s| s.outstanding).unwrap_or(0).into(),
            n.replication_state.as_str().into(),
            n.sync_state.as_str().into(),
            n.operator_detached.into(),
            epoch(n.last_status_change).into(),
            n.cause.as_str().into(),
            group.state_from.into(),
            group.down_votes(&n.host, n.port).into(),
        ]);
    }
    t
}

fn pool_nodes(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("node_id", Text),
        ("hostname", Text),
        ("port", Text),
        ("status", Text),
        ("pg_status", Text),
        ("lb_weight", Text),
        ("role", Text),
        ("pg_role", Text),
        ("select_cnt", Text),
        ("load_balance_node", Text),
        ("replication_delay", Text),
        ("replication_state", Text),
        ("replication_sync_state", Text),
        ("last_status_change", Text),
    ]);
    let snapshot = shared.router.snapshot();
    let stats = shared.router.node_stats();
    let total: f64 = snapshot.nodes.iter().map(|n| n.weight.max(0.0)).sum();
    let by_time = shared.config().health.lag_threshold_bytes == 0 && !shared.config().health.lag_threshold.is_zero();
    for n in &snapshot.nodes {
        let weight = if total > 0.0 { n.weight.max(0.0) / total } else { 0.0 };
        let delay = if by_time { format!("{:.6} second", n.lag_time.as_secs_f64()) } else { n.lag_bytes.to_string() };
        t.push(vec![
            n.id.to_string().into(),
            n.host.as_str().into(),
            n.port.to_string().into(),
            n.status.as_str().into(),
            if n.pg_up { "up" } else { "down" }.into(),
            format!("{weight:.6}").into(),
            n.role.as_str().into(),
            n.pg_role.as_str().into(),
            stats.get(n.id).map(|s| s.reads).unwrap_or(0).to_string().into(),
            // The console reads from no node.
            "false".into(),
            delay.into(),
            n.replication_state.as_str().into(),
            n.sync_state.as_str().into(),
            epoch(n.last_status_change).into(),
        ]);
    }
    t
}

fn pool_processes(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("pool_pid", Int),
        ("start_time", Text),
        ("database", Text),
        ("username", Text),
        ("application_name", Text),
        ("backend_id", Int),
        ("status", Text),
        ("pool_connected", Int),
    ]);
    for c in shared.clients.all() {
        let state = c.state();
        t.push(vec![
            c.id.into(),
            epoch(c.connected).into(),
            c.database.as_str().into(),
            c.user.as_str().into(),
            c.application_name.as_str().into(),
            c.node().into(),
            state.as_str().into(),
            matches!(state, ClientState::Active | ClientState::Pinned).into(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(epoch(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(epoch(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723)), "2000-02-29 01:02:03 UTC");
        assert_eq!(epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_599)), "2025-12-31 23:59:59 UTC");
    }

    fn shared() -> std::sync::Arc<Shared> {
        let mut config = crate::Config::with_nodes(vec![crate::config::NodeConfig::new("127.0.0.1", 1)]);
        config.auth.method = crate::config::AuthMethod::Trust;
        crate::Pooler::new(config).unwrap().shared()
    }

    #[tokio::test]
    async fn every_view_has_rows_as_wide_as_its_columns() {
        let shared = shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let who = crate::clients::Registration {
            user: "app",
            database: "appdb",
            application_name: "psql",
            peer: None,
            tls: None,
            state: ClientState::Waiting,
        };
        let _r = shared.clients.register(who, &s);
        for (word, what) in Show::ALL {
            let t = show(&shared, *what);
            assert!(!t.columns.is_empty(), "{word}");
            for row in &t.rows {
                assert_eq!(row.len(), t.columns.len(), "SHOW {word}");
            }
        }
        let pools = show(&shared, Show::Pools);
        assert_eq!(pools.get(0, "database"), Some(&Value::from("appdb")));
        assert_eq!(pools.get(0, "cl_waiting"), Some(&Value::Int(1)));
        let clients = show(&shared, Show::Clients);
        assert_eq!(clients.get(0, "state"), Some(&Value::from("waiting")));
        assert_eq!(clients.get(0, "application_name"), Some(&Value::from("psql")));
        assert_eq!(show(&shared, Show::Nodes).rows.len(), 1);
    }

    #[test]
    fn the_pgbouncer_views_keep_pgbouncer_column_order() {
        let shared = shared();
        assert_eq!(
            show(&shared, Show::Pools).names()[..6],
            ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req"]
        );
        assert_eq!(
            show(&shared, Show::StatsTotals).names(),
            [
                "database",
                "xact_count",
                "query_count",
                "server_assignment_count",
                "bytes_received",
                "bytes_sent",
                "xact_time",
                "query_time",
                "wait_time",
                "client_parse_count",
                "server_parse_count",
                "bind_count"
            ]
        );
        assert_eq!(show(&shared, Show::Config).names(), ["key", "value", "default", "changeable"]);
    }
}
