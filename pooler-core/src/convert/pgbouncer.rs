//! pgbouncer.ini: `[databases]`, `[users]` and `[pgbouncer]`.

use std::path::Path;
use std::time::Duration;

use super::emit::{key, Toml, Value};
use super::map::{listen_host, Cx, Zero};
use super::parse::{self, name_of, Setting, Settings};
use super::values::{self, Unit};
use super::{Conversion, ConvertError, NoteKind, Source};

/// pgbouncer's compiled-in `unix_socket_dir`, also where it looks for a
/// server's socket when a database names no host.
const PGBOUNCER_SOCKET_DIR: &str = "/tmp";
/// pgbouncer's `default_pool_size`, the same as our `pool.size`.
const DEFAULT_POOL_SIZE: u64 = 20;

/// One `[databases]` entry.
struct Db {
    s: Setting,
    params: Vec<(String, String)>,
    /// (host, port) of every host it names, in order.
    servers: Vec<(String, u16)>,
}

pub(crate) fn convert(text: &str, file: &Path) -> Result<Conversion, ConvertError> {
    let name = name_of(file);
    let (settings, overridden) = Settings::new(parse::ini(text, file)?);
    let mut cx = Cx {
        t: Toml::new(Source::Pgbouncer, &name),
        s: settings,
        section: "pgbouncer",
        dir: file.parent().unwrap_or(Path::new("")).to_path_buf(),
        who: "pgbouncer",
    };
    for (s, by) in overridden {
        let n = super::emit::setting_name(&s);
        cx.t.note(NoteKind::Overridden, &s, &n, format!("set again at {by}"));
    }
    let socket_dir = listeners(&mut cx);
    let dbs = databases(&mut cx, &socket_dir)?;
    if dbs.is_empty() {
        return Err(ConvertError::NoServer {
            file: name,
            problem: "no [databases] entry: nothing to put in [[nodes]]".into(),
        });
    }
    let mode = pool(&mut cx, &dbs);
    auth(&mut cx);
    tls(&mut cx);
    admin_and_logs(&mut cx);
    nodes(&mut cx, &dbs);
    if mode.is_some_and(|m| m != "session") {
        if let Some(s) = cx.s.take("pgbouncer", "server_reset_query_always") {
            if values::boolean(&s.value) == Some(true) {
                cx.t.unmapped(
                    &s,
                    "in transaction and statement mode the reset runs only on connections a client \
                     pinned with session state, never after every transaction",
                );
            } else {
                cx.t.not_needed(&s, "the reset runs after transactions only on pinned connections, as pgbouncer's off");
            }
        }
    }
    for s in cx.s.rest() {
        let why = reason(&s);
        cx.t.unmapped(&s, why);
    }
    Ok(cx.t.finish())
}

/// Why a leftover setting has no equivalent.
fn reason(s: &Setting) -> String {
    if s.section != "pgbouncer" {
        return match s.section.as_str() {
            "" => "outside any section; pgbouncer ignores it too".into(),
            "peers" => "no equivalent: cancel requests are not forwarded between poolers".into(),
            other => format!("no equivalent: section [{other}] is not converted"),
        };
    }
    let r = match s.key.as_str() {
        "logfile" | "syslog" | "syslog_ident" | "syslog_facility" => {
            "the binary logs to standard error (RUST_LOG sets the level, --log-format text|json); \
             redirect it or let the service manager keep it"
        }
        "pidfile" => "the binary writes no pid file; run it under a service manager",
        "user" => "the binary does not switch users; start it as the user it should run as",
        "verbose" | "log_stats" | "stats_period" | "log_pooler_errors" => {
            "log detail follows RUST_LOG; statistics are on the admin console (SHOW STATS) and [metrics]"
        }
        "max_db_connections" | "max_user_connections" => {
            "no limit across pools: pool.size bounds each (node, user, database) pool"
        }
        "server_login_retry" => "no equivalent: a failed server login is reported to the client at once",
        "tcp_keepalive" | "tcp_keepcnt" | "tcp_keepidle" | "tcp_keepintvl" => {
            "keepalive is always on towards servers (first probe after 60 s idle, then every 10 s); \
             not configurable"
        }
        "tcp_defer_accept" | "tcp_socket_buffer" | "pkt_buf" | "sbuf_loopcnt" | "listen_backlog" | "so_reuseport" => {
            "socket and buffer tuning is not configurable"
        }
        "client_tls_ciphers"
        | "server_tls_ciphers"
        | "client_tls13_ciphers"
        | "server_tls13_ciphers"
        | "client_tls_ecdhcurve"
        | "client_tls_dheparams" => {
            "rustls chooses among its own safe cipher suites and key-exchange groups; not configurable"
        }
        "dns_max_ttl" | "dns_nxdomain_ttl" | "dns_zone_check_period" | "resolv_conf" => {
            "host names are resolved by the system resolver when a connection opens; not configurable"
        }
        "max_packet_size" => {
            "no equivalent: messages stream through at any size, except those the pooler gathers whole, \
             which server.max_message_size limits (docs/CONFIG.md)"
        }
        "unix_socket_group" => "no equivalent: the socket belongs to the pooler's user and group",
        "auth_ident_file" => "no equivalent: no pg_ident.conf user maps",
        "peer_id" => "no equivalent: cancel requests are not forwarded between poolers",
        "server_reset_query_always" => "ignored by pgbouncer in session mode, the mode of this file",
        _ => "no equivalent in this pooler",
    };
    r.into()
}

/// `[server]`: listen_addr, listen_port, unix_socket_dir and _mode. Returns
/// the socket directory (where pgbouncer also finds servers named by no host).
fn listeners(cx: &mut Cx) -> String {
    let port = match cx.take("listen_port") {
        Some(s) => match s.value.trim().parse::<u16>() {
            Ok(p) if p > 0 => Some((p, s)),
            _ => {
                cx.t.unmapped(&s, "not a port number; the listen port stays 6432");
                None
            }
        },
        None => None,
    };
    let p = port.as_ref().map_or(6432, |(p, _)| *p);
    let addr = cx.take("listen_addr");
    let (host, why) = match addr.as_ref().map(|s| s.value.trim()) {
        None | Some("") => (None, None),
        Some(a) => {
            let items = values::list(a, ',');
            let first = items.first().cloned().unwrap_or_default();
            let (h, mut why) = listen_host(&first);
            if items.len() > 1 {
                why = Some(format!(
                    "{}the pooler listens on one address: {first} (the others, {}, are not listened on)",
                    why.map(|w| format!("{w}; ")).unwrap_or_default(),
                    items[1..].join(", ")
                ));
            }
            (Some(h), why)
        }
    };
    let listen = format!("{}:{p}", host.as_deref().unwrap_or("127.0.0.1"));
    let slot = cx.t.set("server", "listen", Value::Str(listen));
    if let Some((_, s)) = &port {
        cx.t.cite_line(slot, s);
    }
    match (&addr, &why) {
        (Some(s), Some(w)) => cx.t.partial(slot, s, w.clone()),
        (Some(s), None) if host.is_some() => cx.t.cite_line(slot, s),
        _ => {}
    }
    if host.is_none() {
        let slot = cx.t.set("server", "listen_tcp", Value::Bool(false));
        match &addr {
            Some(s) => cx.t.cite_line(slot, s),
            None => cx.t.default_kept(slot, "listen_addr", "pgbouncer then listens on its Unix socket only"),
        }
    }
    let dir = match cx.take("unix_socket_dir") {
        Some(s) if s.value.trim().is_empty() => {
            cx.t.not_needed(&s, "no Unix socket: server.unix_socket_dir is left unset");
            PGBOUNCER_SOCKET_DIR.to_owned()
        }
        Some(s) => {
            let d = cx.path(s.value.trim());
            cx.put("server", "unix_socket_dir", Value::Str(d.clone()), &s);
            d
        }
        None => {
            let slot = cx.t.set("server", "unix_socket_dir", Value::Str(PGBOUNCER_SOCKET_DIR.into()));
            cx.t.default_kept(
                slot,
                "unix_socket_dir",
                "pgbouncer listens on a socket in /tmp by default; ours on none",
            );
            PGBOUNCER_SOCKET_DIR.to_owned()
        }
    };
    if let Some(s) = cx.take("unix_socket_mode") {
        let v = s.value.trim();
        if u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o777) {
            cx.put("server", "unix_socket_mode", Value::Str(format!("{:0>4}", v)), &s);
        } else {
            cx.t.unmapped(&s, "not an octal file mode; server.unix_socket_mode keeps 0777");
        }
    }
    dir
}

/// `[databases]`: every entry with the servers it names.
fn databases(cx: &mut Cx, socket_dir: &str) -> Result<Vec<Db>, ConvertError> {
    let mut out = Vec::new();
    for s in cx.s.take_where(|s| s.section == "databases") {
        let params =
            parse::connstring(&s.value).map_err(|problem| ConvertError::Syntax { location: s.at.clone(), problem })?;
        let get = |k: &str| params.iter().rev().find(|(p, _)| p == k).map(|(_, v)| v.clone());
        let port = match get("port") {
            Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| ConvertError::Syntax {
                location: s.at.clone(),
                problem: format!("port={p} is not a port number"),
            })?,
            None => 5432,
        };
        let hosts = get("host").map(|h| values::list(&h, ',')).unwrap_or_default();
        let servers = if hosts.is_empty() {
            vec![(socket_dir.to_owned(), port)]
        } else {
            hosts.into_iter().map(|h| (h, port)).collect()
        };
        out.push(Db { s, params, servers });
    }
    Ok(out)
}

/// A pseudo-setting for one parameter of a `[databases]` or `[users]` entry,
/// so notes name it (`[databases] app: user`).
fn param(s: &Setting, p: &str, v: &str) -> Setting {
    Setting { section: s.section.clone(), key: format!("{}: {p}", s.key), value: v.to_owned(), at: s.at.clone() }
}

/// `[pool]`, `[pool.databases.*]`, `[pool.users.*]`. Returns the pool mode.
fn pool(cx: &mut Cx, dbs: &[Db]) -> Option<String> {
    // Global mode and size: `*`'s own, else [pgbouncer]'s.
    let mode_setting = cx.take("pool_mode");
    let size_setting = cx.take("default_pool_size");
    let star = dbs.iter().find(|d| d.s.key == "*");
    let star_param = |p: &str| star.and_then(|d| d.params.iter().rev().find(|(k, _)| k == p)).map(|(_, v)| v.clone());
    let default_mode = mode_setting.as_ref().map(|s| s.value.trim().to_ascii_lowercase());
    let default_size = match &size_setting {
        Some(s) => match values::integer(&s.value) {
            Some(n) if (1..=100_000).contains(&n) => Some(n),
            _ => {
                cx.t.unmapped(s, "not a pool size from 1 to 100000; pool.size keeps 20");
                None
            }
        },
        None => None,
    }
    .unwrap_or(DEFAULT_POOL_SIZE);
    let valid_mode = |m: &str| matches!(m, "session" | "transaction" | "statement");
    let mut global_mode = "session".to_owned();
    match &mode_setting {
        Some(s) if default_mode.as_deref().is_some_and(valid_mode) => {
            global_mode = default_mode.clone().unwrap_or_default();
            cx.put("pool", "mode", Value::Str(global_mode.clone()), s);
        }
        Some(s) => cx.t.unmapped(s, "not session, transaction or statement; pool.mode stays session"),
        None => {
            let slot = cx.t.set("pool", "mode", Value::Str("session".into()));
            cx.t.comment(slot, "pool_mode not set: session, pgbouncer's default and ours");
        }
    }
    let star_mode = star_param("pool_mode").map(|m| m.to_ascii_lowercase()).filter(|m| valid_mode(m));
    if let (Some(m), Some(d)) = (&star_mode, star) {
        global_mode = m.clone();
        let slot = cx.t.set("pool", "mode", Value::Str(m.clone()));
        cx.t.partial(slot, &param(&d.s, "pool_mode", m), "the `*` entry's mode applies to every database not listed");
    }
    let mut global_size = default_size;
    if let Some(s) = &size_setting {
        if values::integer(&s.value) == Some(default_size) {
            cx.put("pool", "size", Value::Int(default_size), s);
        }
    }
    let star_size = star_param("pool_size").and_then(|v| values::integer(&v)).filter(|n| (1..=100_000).contains(n));
    if let (Some(n), Some(d)) = (star_size, star) {
        global_size = n;
        let slot = cx.t.set("pool", "size", Value::Int(n));
        cx.t.partial(
            slot,
            &param(&d.s, "pool_size", &n.to_string()),
            "the `*` entry's size applies to every database not listed",
        );
    }
    // Per database.
    for d in dbs.iter().filter(|d| d.s.key != "*") {
        let table = format!("pool.databases.{}", key(&d.s.key));
        let get = |k: &str| d.params.iter().rev().find(|(p, _)| p == k).map(|(_, v)| v.clone());
        match get("pool_size").map(|v| (values::integer(&v).filter(|n| (1..=100_000).contains(n)), v)) {
            Some((Some(n), v)) => {
                let slot = cx.t.set(&table, "size", Value::Int(n));
                cx.t.cite_line(slot, &param(&d.s, "pool_size", &v));
            }
            Some((None, v)) => cx.t.unmapped(&param(&d.s, "pool_size", &v), "not a pool size from 1 to 100000"),
            None if global_size != default_size => {
                let slot = cx.t.set(&table, "size", Value::Int(default_size));
                cx.t.comment(slot, "a listed database without pool_size gets default_pool_size, not the `*` entry's");
            }
            None => {}
        }
        match get("pool_mode").map(|m| m.to_ascii_lowercase()) {
            Some(m) if valid_mode(&m) => {
                let slot = cx.t.set(&table, "mode", Value::Str(m.clone()));
                cx.t.cite_line(slot, &param(&d.s, "pool_mode", &m));
            }
            Some(m) => cx.t.unmapped(&param(&d.s, "pool_mode", &m), "not session, transaction or statement"),
            None if star_mode.is_some() && Some(&global_mode) != default_mode.as_ref() => {
                let m = default_mode.clone().filter(|m| valid_mode(m)).unwrap_or_else(|| "session".into());
                let slot = cx.t.set(&table, "mode", Value::Str(m));
                cx.t.comment(
                    slot,
                    "a listed database without pool_mode gets [pgbouncer]'s pool_mode, not the `*` entry's",
                );
            }
            None => {}
        }
    }
    users(cx);
    // Timeouts and sizes of [pgbouncer].
    let min = cx.number("min_pool_size", "pool", "min_size", 0, 100_000, None);
    cx.number("reserve_pool_size", "pool", "reserve_size", 0, 100_000, None);
    cx.duration("reserve_pool_timeout", "pool", "reserve_timeout", Unit::S, None, Zero::Min);
    cx.number("max_client_conn", "server", "max_client_connections", 1, 1_000_000, Some(100));
    cx.duration("server_lifetime", "pool", "server_lifetime", Unit::S, None, Zero::Min);
    cx.duration("server_idle_timeout", "pool", "server_idle_timeout", Unit::S, None, Zero::Forever);
    cx.duration(
        "server_connect_timeout",
        "pool",
        "connect_timeout",
        Unit::S,
        Some(Duration::from_secs(15)),
        Zero::Forever,
    );
    cx.duration(
        "query_wait_timeout",
        "pool",
        "checkout_timeout",
        Unit::S,
        Some(Duration::from_secs(120)),
        Zero::Forever,
    );
    cx.duration(
        "client_login_timeout",
        "server",
        "client_login_timeout",
        Unit::S,
        Some(Duration::from_secs(60)),
        Zero::Forever,
    );
    let s = cx.peek("client_idle_timeout");
    if let Some(d) = cx.duration("client_idle_timeout", "pool", "client_idle_timeout", Unit::S, None, Zero::Off) {
        if !d.is_zero() && global_mode == "session" {
            note_last(
                cx,
                s,
                "pool",
                "client_idle_timeout",
                "ours closes only clients that hold no server connection; \
                 in session mode a client holds one for its whole session",
            );
        }
    }
    cx.duration("idle_transaction_timeout", "pool", "idle_transaction_timeout", Unit::S, None, Zero::Off);
    let s = cx.peek("query_timeout");
    if let Some(d) = cx.duration("query_timeout", "pool", "response_timeout", Unit::S, None, Zero::Off) {
        if !d.is_zero() {
            note_last(
                cx,
                s,
                "pool",
                "response_timeout",
                "ours ends a request only when the server sends nothing for \
                 this long; a query that streams rows is not cut",
            );
        }
    }
    cx.duration("tcp_user_timeout", "pool", "tcp_user_timeout", Unit::Ms, None, Zero::Off);
    cx.duration("server_check_delay", "pool", "check_delay", Unit::S, None, Zero::Min);
    if let Some(s) = cx.take("server_check_query") {
        cx.put("pool", "check_query", Value::Str(s.value.clone()), &s);
    }
    if let Some(s) = cx.take("server_reset_query") {
        let v = s.value.trim().trim_end_matches(';').trim();
        let list = if v.is_empty() { Vec::new() } else { vec![v.to_owned()] };
        let slot = cx.t.set("pool", "reset_query_list", Value::List(list));
        if global_mode == "session" {
            cx.t.cite_line(slot, &s);
        } else {
            cx.t.partial(
                slot,
                &s,
                "pgbouncer skips it in transaction mode; ours runs it on connections a client pinned",
            );
        }
    }
    if let Some(s) = cx.take("max_prepared_statements") {
        match values::integer(&s.value) {
            Some(0) => cx.t.not_needed(
                &s,
                "prepared statements always follow the client in transaction and \
                 statement mode (pgbouncer's 0 turned that off)",
            ),
            Some(n) => {
                let c = n.clamp(1, 100_000);
                let slot = cx.t.set("pool", "prepared_statement_cache_size", Value::Int(c));
                cx.t.partial(
                    slot,
                    &s,
                    "ours bounds the statements prepared on each server connection \
                     (least recently used closed), not per client",
                );
            }
            None => cx.t.unmapped(&s, "not a whole number"),
        }
    }
    if let Some(s) = cx.take("track_extra_parameters") {
        let items: Vec<String> = values::list(&s.value.replace(' ', ","), ',');
        let ok: Vec<String> = items
            .iter()
            .filter(|i| i.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .cloned()
            .collect();
        let slot = cx.t.set("pool", "track_extra_parameters", Value::List(ok));
        cx.t.partial(slot, &s, "parameters the server reports (IntervalStyle...) are carried anyway; SET ones too");
    }
    if let Some(s) = cx.take("ignore_startup_parameters") {
        cx.t.not_needed(
            &s,
            "every startup parameter is set on the server connection (docs/CONFIG.md, \
             Startup parameters), so none needs ignoring; note they now reach the server",
        );
    }
    // min_size may not exceed any pool's size.
    if let Some(m) = min {
        let smallest = smallest_size(&cx.t, global_size);
        if m > smallest {
            if let Some(Value::Int(_)) = cx.t.get("pool", "min_size") {
                let slot = cx.t.set("pool", "min_size", Value::Int(smallest));
                cx.t.comment(
                    slot,
                    &format!(
                        "min_pool_size = {m} is above the smallest pool size; ours requires min_size <= every size"
                    ),
                );
            }
        }
    }
    let first = dbs.first().map(|d| d.s.clone());
    if star.is_none() {
        if let Some(s) = first {
            cx.t.note(
                NoteKind::Partial,
                &s,
                "[databases]",
                "without a `*` entry pgbouncer refuses databases it does not list; the pooler passes any \
                 database name on, and the server refuses the ones it does not have",
            );
        }
    }
    Some(global_mode)
}

/// Re-comments a key written from `s` as a partial mapping.
fn note_last(cx: &mut Cx, s: Option<Setting>, table: &str, tkey: &str, message: &str) {
    let (Some(s), Some(v)) = (s, cx.t.get(table, tkey).cloned()) else { return };
    let slot = cx.t.set(table, tkey, v);
    cx.t.partial(slot, &s, message);
}

fn smallest_size(t: &Toml, global: u64) -> u64 {
    let mut min = global;
    for v in t.values_of_key("size") {
        if let Value::Int(n) = v {
            min = min.min(*n);
        }
    }
    min
}

/// `[users]`: pool_mode and pool_size per user.
fn users(cx: &mut Cx) {
    for s in cx.s.take_where(|s| s.section == "users") {
        let params = match parse::connstring(&s.value) {
            Ok(p) => p,
            Err(e) => {
                cx.t.unmapped(&s, format!("not key=value pairs ({e})"));
                continue;
            }
        };
        let table = format!("pool.users.{}", key(&s.key));
        for (p, v) in params {
            let ps = param(&s, &p, &v);
            match p.as_str() {
                "pool_mode" if matches!(v.to_ascii_lowercase().as_str(), "session" | "transaction" | "statement") => {
                    let slot = cx.t.set(&table, "mode", Value::Str(v.to_ascii_lowercase()));
                    cx.t.cite_line(slot, &ps);
                }
                "pool_size" if values::integer(&v).is_some_and(|n| (1..=100_000).contains(&n)) => {
                    let slot = cx.t.set(&table, "size", Value::Int(values::integer(&v).unwrap_or(1)));
                    cx.t.cite_line(slot, &ps);
                }
                "max_user_connections" => cx.t.unmapped(&ps, "no limit across pools: pool.size bounds each pool"),
                _ => cx.t.unmapped(&ps, "no equivalent per user"),
            }
        }
    }
}

/// `[auth]`.
fn auth(cx: &mut Cx) {
    let auth_type = cx.take("auth_type");
    let hba = cx.take("auth_hba_file");
    let kind = auth_type.as_ref().map(|s| s.value.trim().to_ascii_lowercase());
    match (kind.as_deref(), &auth_type) {
        (None, _) => {
            let slot = cx.t.set("auth", "method", Value::Str("md5".into()));
            cx.t.default_kept(
                slot,
                "auth_type",
                "pgbouncer's default is md5 (SCRAM for users with SCRAM secrets); ours scram-sha-256",
            );
        }
        (Some(m @ ("trust" | "md5" | "scram-sha-256" | "cert" | "peer")), Some(s)) => {
            cx.put("auth", "method", Value::Str(m.to_owned()), s);
        }
        (Some("any"), Some(s)) => {
            let slot = cx.t.set("auth", "method", Value::Str("trust".into()));
            cx.t.partial(slot, s, "no password, as with `any`; but the user name the client gives is the one used");
        }
        (Some("plain"), Some(s)) => {
            let slot = cx.t.set("auth", "method", Value::Str("md5".into()));
            cx.t.partial(slot, s, "cleartext passwords are not asked for: md5 (SCRAM for SCRAM secrets) instead");
        }
        (Some("hba"), Some(s)) => match &hba {
            Some(h) if !h.value.trim().is_empty() => {
                let p = cx.path(h.value.trim());
                let slot = cx.t.set("auth", "hba_file", Value::Str(p));
                cx.t.cite_line(slot, s);
                cx.t.partial(
                    slot,
                    h,
                    "same pg_hba.conf form; check it with `pooler check` (docs/ACCESS.md lists what is accepted)",
                );
            }
            _ => cx.t.unmapped(s, "hba without auth_hba_file: set auth.hba_file"),
        },
        (Some(_), Some(s)) => {
            let slot = cx.t.set("auth", "method", Value::Str("scram-sha-256".into()));
            cx.t.comment(
                slot,
                &format!(
                    "auth_type = {} ({}) has no equivalent: scram-sha-256 against the password file instead",
                    s.value, s.at
                ),
            );
            cx.t.unmapped(
                s,
                "no equivalent (PAM and the like): scram-sha-256 against the password file is written instead",
            );
        }
        (Some(_), None) => {}
    }
    if kind.as_deref() != Some("hba") {
        if let Some(h) = &hba {
            cx.t.not_needed(h, "pgbouncer reads it only with auth_type = hba; to use it here set auth.hba_file");
        }
    }
    match cx.take("auth_file") {
        Some(s) if !s.value.trim().is_empty() => {
            let p = cx.path(s.value.trim());
            let slot = cx.t.set("auth", "password_file", Value::Str(p));
            cx.t.cite_line(slot, &s);
            cx.t.comment(
                slot,
                "userlist.txt's \"user\" \"secret\" lines are read as they are (plaintext, md5 or SCRAM secrets)",
            );
        }
        Some(s) => cx.t.not_needed(&s, "empty: no password file"),
        None => {}
    }
    cx.string("auth_user", "auth", "auth_user");
    if let Some(s) = cx.take("auth_query") {
        let slot = cx.put("auth", "auth_query", Value::Str(s.value.clone()), &s);
        if !s.value.contains("$1") {
            cx.t.comment(slot, "our auth_query must take the user name as $1");
        }
    }
    cx.string("auth_dbname", "auth", "auth_dbname");
}

/// `[client_tls]`, `[server_tls]`.
fn tls(cx: &mut Cx) {
    for (side, table) in [("client", "client_tls"), ("server", "server_tls")] {
        if let Some(s) = cx.take(&format!("{side}_tls_sslmode")) {
            let m = s.value.trim().to_ascii_lowercase();
            match m.as_str() {
                "disable" | "prefer" | "require" | "verify-ca" | "verify-full" => {
                    cx.put(table, "sslmode", Value::Str(m), &s);
                }
                "allow" if side == "client" => {
                    cx.put(table, "sslmode", Value::Str(m), &s);
                }
                "allow" => {
                    let slot = cx.t.set(table, "sslmode", Value::Str("prefer".into()));
                    cx.t.partial(slot, &s, "no `allow` towards servers: prefer (TLS first, plain text if declined)");
                }
                _ => cx.t.unmapped(&s, "not an sslmode"),
            }
        }
        cx.file(&format!("{side}_tls_cert_file"), table, "cert_file");
        cx.file(&format!("{side}_tls_key_file"), table, "key_file");
        cx.file(&format!("{side}_tls_ca_file"), table, "ca_file");
        if let Some(s) = cx.take(&format!("{side}_tls_protocols")) {
            let v = s.value.to_ascii_lowercase();
            let words = values::list(&v.replace([' ', ':'], ","), ',');
            let has = |w: &str| words.iter().any(|x| x == w);
            let old = has("tlsv1.0") || has("tlsv1") || has("tlsv1.1") || has("all") || has("legacy");
            let only13 = has("tlsv1.3") && !has("tlsv1.2") && !old && !has("secure") && !has("normal");
            let min = if only13 { "TLSv1.3" } else { "TLSv1.2" };
            let slot = cx.t.set(table, "min_protocol", Value::Str(min.into()));
            if old {
                cx.t.partial(slot, &s, "TLS 1.0 and 1.1 are not offered: TLS 1.2 and 1.3 only");
            } else {
                cx.t.cite_line(slot, &s);
            }
        }
    }
}

/// `[admin]`, `[server]` logging.
fn admin_and_logs(cx: &mut Cx) {
    for k in ["admin_users", "stats_users"] {
        if let Some(s) = cx.take(k) {
            let users = values::list(&s.value.replace(' ', ","), ',');
            cx.put("admin", k, Value::List(users), &s);
        }
    }
    let c = cx.take("log_connections");
    let d = cx.take("log_disconnections");
    let cb = c.as_ref().and_then(|s| values::boolean(&s.value));
    let db = d.as_ref().and_then(|s| values::boolean(&s.value));
    match (&c, &d) {
        (None, None) => {}
        _ => {
            let on = cb.or(db).unwrap_or(true);
            let slot = cx.t.set("server", "log_connections", Value::Bool(on));
            for s in [&c, &d].into_iter().flatten() {
                if cb.unwrap_or(true) != db.unwrap_or(true) {
                    cx.t.partial(slot, s, "one setting logs both connections and disconnections");
                } else {
                    cx.t.cite_line(slot, s);
                }
            }
        }
    }
}

/// `[[nodes]]`: the server of the first entry, and the others commented out.
fn nodes(cx: &mut Cx, dbs: &[Db]) {
    let mut servers: Vec<((String, u16), Vec<String>)> = Vec::new();
    for d in dbs {
        for srv in &d.servers {
            match servers.iter_mut().find(|(s, _)| s == srv) {
                Some((_, names)) => names.push(d.s.key.clone()),
                None => servers.push((srv.clone(), vec![d.s.key.clone()])),
            }
        }
    }
    for (i, ((host, port), names)) in servers.iter().enumerate() {
        let t = cx.t.array("nodes", i > 0);
        if i == 0 {
            cx.t.table_comment(t, &format!("serves [databases] {}", names.join(", ")));
        } else {
            cx.t.table_comment(
                t,
                &format!(
                    "NOT IN FORCE: [databases] {} live on another server. One pooler serves one cluster \
                     (the first node is its primary, the others its standbys): run another pooler for this \
                     server, or uncomment it only if it is a standby of the first.",
                    names.join(", ")
                ),
            );
        }
        cx.t.set_in(t, "host", Value::Str(host.clone()));
        cx.t.set_in(t, "port", Value::Int(u64::from(*port)));
    }
    let primary = servers.first().map(|(s, _)| s.clone());
    for d in dbs {
        let mut elsewhere = Vec::new();
        for srv in &d.servers {
            if Some(srv) != primary.as_ref() {
                elsewhere.push(format!("{}:{}", srv.0, srv.1));
            }
        }
        if !elsewhere.is_empty() {
            let multi = d.servers.len() > 1;
            let msg = if multi {
                format!(
                    "pgbouncer spreads connections over its hosts; {} are written as commented-out nodes",
                    elsewhere.join(", ")
                )
            } else {
                format!("on another server ({}) than the first entry: one pooler serves one cluster; written as a commented-out node", elsewhere.join(", "))
            };
            cx.t.unmapped(&param(&d.s, "host", &elsewhere.join(",")), msg);
        }
        for (p, v) in &d.params {
            let ps = param(&d.s, p, v);
            match p.as_str() {
                "host" | "port" | "pool_size" | "pool_mode" => {}
                "dbname" if *v == d.s.key => {}
                "dbname" => {
                    cx.t.unmapped(&ps, format!("the pooler does not rename databases: clients must ask for {v}"))
                }
                "user" => cx.t.unmapped(&ps, "no forced user: clients log in to the server as themselves"),
                "password" => {
                    cx.t.unmapped(&ps, "no per-database password: the server password comes from the password file")
                }
                "auth_user" | "auth_dbname" | "auth_query" => {
                    cx.t.unmapped(&ps, "no per-database auth_query settings: [auth]'s apply to every database")
                }
                "client_encoding" | "datestyle" | "timezone" | "application_name" => {
                    cx.t.unmapped(&ps, "no per-database server parameter: clients' own startup parameters are applied")
                }
                "min_pool_size" | "reserve_pool" | "reserve_pool_size" | "max_db_connections" | "server_lifetime" => {
                    cx.t.unmapped(&ps, "no per-database value: [pool]'s applies")
                }
                "connect_query" => cx.t.unmapped(&ps, "no query run on each new server connection"),
                _ => cx.t.unmapped(&ps, "no equivalent"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{AuthMethod, ClientTlsMode, Config, PoolMode, ServerTlsMode, TlsVersion};

    /// A directory under the system temp dir, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("pooler-convert-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// What operators run: one server, transaction pooling, TLS, auth_query.
    const PRODUCTION: &str = r#";; pgbouncer.ini of the app cluster
[databases]
app = host=10.0.0.1 port=5432 dbname=app pool_size=40
reports = host=10.0.0.1 port=5432 pool_mode=session
* = host=10.0.0.1 port=5432

[pgbouncer]
logfile = /var/log/pgbouncer/pgbouncer.log
pidfile = /var/run/pgbouncer/pgbouncer.pid
listen_addr = *
listen_port = 6432
unix_socket_dir = /var/run/postgresql
auth_type = scram-sha-256
auth_file = userlist.txt
auth_user = pgbouncer
auth_query = SELECT usename, passwd FROM pgbouncer.get_auth($1)
pool_mode = transaction
default_pool_size = 25
min_pool_size = 5
reserve_pool_size = 5
reserve_pool_timeout = 3
max_client_conn = 5000
server_lifetime = 1800
server_idle_timeout = 300
query_wait_timeout = 60
client_tls_sslmode = require
client_tls_cert_file = /etc/pgbouncer/server.crt
client_tls_key_file = /etc/pgbouncer/server.key
client_tls_protocols = secure
client_tls_ciphers = HIGH:!aNULL
server_tls_sslmode = verify-full
server_tls_ca_file = /etc/pgbouncer/root.crt
admin_users = postgres, ops
stats_users = grafana
ignore_startup_parameters = extra_float_digits
max_prepared_statements = 100
max_db_connections = 80
tcp_keepalive = 1
"#;

    fn config(c: &Conversion) -> Config {
        match Config::from_toml(&c.toml) {
            Ok(cfg) => cfg,
            Err(e) => panic!("{e}\n{}", c.toml),
        }
    }

    fn note<'a>(c: &'a Conversion, setting: &str) -> &'a crate::convert::Note {
        c.notes.iter().find(|n| n.setting == setting).unwrap_or_else(|| panic!("no note for {setting}: {:#?}", c.notes))
    }

    #[test]
    fn a_production_pgbouncer_ini_converts_to_a_config_that_loads() {
        let c = convert(PRODUCTION, Path::new("/etc/pgbouncer/pgbouncer.ini")).unwrap();
        let cfg = config(&c);
        assert_eq!(cfg.nodes.len(), 1, "{}", c.toml);
        assert_eq!((cfg.nodes[0].host.as_str(), cfg.nodes[0].port), ("10.0.0.1", 5432));
        assert_eq!(cfg.server.listen, "0.0.0.0:6432");
        assert_eq!(cfg.server.unix_socket_dir, Some(PathBuf::from("/var/run/postgresql")));
        assert_eq!(cfg.server.max_client_connections, 5000);
        assert_eq!(cfg.pool.mode, PoolMode::Transaction);
        assert_eq!((cfg.pool.size, cfg.pool.min_size, cfg.pool.reserve_size), (25, 5, 5));
        assert_eq!(cfg.pool.effective("u", "app").size, 40);
        assert_eq!(cfg.pool.effective("u", "reports").mode, PoolMode::Session);
        assert_eq!(cfg.pool.reserve_timeout, Duration::from_secs(3));
        assert_eq!(cfg.pool.server_lifetime, Duration::from_secs(1800));
        assert_eq!(cfg.pool.server_idle_timeout, Duration::from_secs(300));
        assert_eq!(cfg.pool.checkout_timeout, Duration::from_secs(60));
        assert_eq!(cfg.pool.prepared_statement_cache_size, 100);
        assert_eq!(cfg.auth.method, AuthMethod::ScramSha256);
        assert_eq!(cfg.auth.password_file, Some(PathBuf::from("/etc/pgbouncer/userlist.txt")));
        assert_eq!(cfg.auth.auth_user.as_deref(), Some("pgbouncer"));
        assert_eq!(cfg.auth.auth_query, "SELECT usename, passwd FROM pgbouncer.get_auth($1)");
        assert_eq!(cfg.client_tls.sslmode, ClientTlsMode::Require);
        assert_eq!(cfg.client_tls.min_protocol, TlsVersion::Tls12);
        assert_eq!(cfg.server_tls.sslmode, ServerTlsMode::VerifyFull);
        assert_eq!(cfg.server_tls.ca_file, Some(PathBuf::from("/etc/pgbouncer/root.crt")));
        assert_eq!(cfg.admin.admin_users, ["postgres", "ops"]);
        assert_eq!(cfg.admin.stats_users, ["grafana"]);
        // pgbouncer's defaults where ours differ, kept.
        assert_eq!(cfg.pool.connect_timeout, Duration::from_secs(15));
        assert_eq!(cfg.server.client_login_timeout, Duration::from_secs(60));
        // Every setting without an equivalent is named, with its line.
        for (k, line) in [
            ("logfile", 8),
            ("pidfile", 9),
            ("client_tls_ciphers", 30),
            ("max_db_connections", 37),
            ("tcp_keepalive", 38),
        ] {
            let n = note(&c, k);
            assert_eq!(n.kind, NoteKind::Unmapped, "{k}");
            assert_eq!(n.location.as_deref(), Some(format!("/etc/pgbouncer/pgbouncer.ini:{line}").as_str()), "{k}");
            assert!(
                c.toml.contains(&format!("pgbouncer.ini:{line} {k}"))
                    || c.toml.contains(&format!("pgbouncer.ini:{line}: {k}")),
                "{k}\n{}",
                c.toml
            );
        }
        assert_eq!(note(&c, "ignore_startup_parameters").kind, NoteKind::NotNeeded);
        assert_eq!(note(&c, "max_prepared_statements").kind, NoteKind::Partial);
        assert_eq!(c.unmapped(), 5, "{:#?}", c.notes);
        // Every line of the source is accounted for: mapped, or noted.
        assert!(c.toml.contains("listen_addr = * (/etc/pgbouncer/pgbouncer.ini:10)"), "{}", c.toml);
    }

    #[test]
    fn defaults_the_file_relied_on_are_written_out() {
        let c = convert("[databases]\ndb = host=db1\n", Path::new("p.ini")).unwrap();
        let cfg = Config::from_toml(&c.toml.replace("method = \"md5\"", "method = \"trust\"")).unwrap();
        assert!(!cfg.server.listen_tcp, "pgbouncer listens on TCP only with listen_addr\n{}", c.toml);
        assert_eq!(cfg.server.unix_socket_dir, Some(PathBuf::from("/tmp")));
        assert_eq!(cfg.server.max_client_connections, 100);
        assert_eq!(cfg.pool.checkout_timeout, Duration::from_secs(120));
        assert_eq!(cfg.pool.mode, PoolMode::Session);
        assert_eq!(cfg.pool.server_idle_timeout, Duration::from_secs(600));
        assert!(c.toml.contains("method = \"md5\""), "{}", c.toml);
        assert!(c.notes.iter().any(|n| n.kind == NoteKind::DefaultKept && n.setting == "auth_type"));
        assert!(c.notes.iter().any(|n| n.kind == NoteKind::Partial && n.setting == "[databases]"), "no `*`: noted");
    }

    #[test]
    fn databases_on_other_servers_are_not_merged_silently() {
        let ini = "[databases]\nsales = host=10.0.0.1 dbname=sales_prod user=app password=hunter2\n\
                   hr = host=10.0.0.2 port=5433\nlocal =\n[pgbouncer]\nauth_type = trust\nlisten_addr = 127.0.0.1\n";
        let c = convert(ini, Path::new("multi.ini")).unwrap();
        let cfg = config(&c);
        assert_eq!(cfg.nodes.len(), 1, "only the first server is in force\n{}", c.toml);
        assert_eq!(cfg.nodes[0].host, "10.0.0.1");
        assert!(c.toml.contains("# [[nodes]]\n# host = \"10.0.0.2\"\n# port = 5433"), "{}", c.toml);
        assert!(c.toml.contains("# host = \"/tmp\""), "a database without host is on the socket\n{}", c.toml);
        assert!(c.toml.contains("NOT IN FORCE: [databases] hr"), "{}", c.toml);
        assert_eq!(note(&c, "[databases] hr: host").kind, NoteKind::Unmapped);
        assert!(note(&c, "[databases] sales: dbname").message.contains("sales_prod"));
        assert_eq!(note(&c, "[databases] sales: user").kind, NoteKind::Unmapped);
        assert!(!c.toml.contains("hunter2"), "a password is never copied\n{}", c.toml);
        assert!(c.notes.iter().all(|n| !n.to_string().contains("hunter2")));
    }

    #[test]
    fn the_star_entry_sets_the_defaults_and_listed_databases_keep_pgbouncers() {
        let ini = "[databases]\n* = host=h pool_size=50 pool_mode=statement\nbig = host=h\n\
                   [pgbouncer]\nauth_type = trust\nlisten_addr = 0.0.0.0\npool_mode = transaction\n\
                   [users]\nbatch = pool_mode=session max_user_connections=3\n";
        let cfg = config(&convert(ini, Path::new("p.ini")).unwrap());
        assert_eq!((cfg.pool.size, cfg.pool.mode), (50, PoolMode::Statement));
        let big = cfg.pool.effective("u", "big");
        assert_eq!((big.size, big.mode), (20, PoolMode::Transaction));
        assert_eq!(cfg.pool.effective("batch", "x").mode, PoolMode::Session);
    }

    #[test]
    fn include_files_and_userlist_are_followed() {
        let dir = Dir::new("include");
        std::fs::write(dir.0.join("userlist.txt"), "\"alice\" \"secret\"\n").unwrap();
        std::fs::write(dir.0.join("databases.ini"), "[databases]\napp = host=127.0.0.1 port=5433\n").unwrap();
        let main =
            "%include databases.ini\n[pgbouncer]\nlisten_addr = 127.0.0.1\nauth_file = userlist.txt\nauth_type = md5\n";
        let file = dir.0.join("pgbouncer.ini");
        let c = convert(main, &file).unwrap();
        let cfg = config(&c);
        assert_eq!(cfg.nodes[0].port, 5433);
        assert_eq!(cfg.auth.password_file, Some(dir.0.join("userlist.txt")));
        assert_eq!(cfg.auth.method, AuthMethod::Md5);
        // The password file the output names is one our pooler reads.
        let pf = crate::auth::PasswordFile::load(&dir.0.join("userlist.txt")).unwrap();
        assert_eq!(pf.len(), 1);
        let e = convert("%include nope.ini\n", &file).unwrap_err().to_string();
        assert!(e.contains("pgbouncer.ini:1") && e.contains("nope.ini"), "{e}");
    }

    #[test]
    fn timeouts_of_zero_and_odd_values_are_explained() {
        let ini = "[databases]\nd = host=h\n[pgbouncer]\nauth_type = pam\nlisten_addr = db.example.com,10.0.0.5\n\
                   query_wait_timeout = 0\nserver_idle_timeout = 0\nquery_timeout = 30\nclient_tls_protocols = tlsv1.3\n\
                   server_tls_sslmode = allow\nserver_check_delay = 0\nauth_file = /etc/u.txt\n";
        let c = convert(ini, Path::new("p.ini")).unwrap();
        let cfg = config(&c);
        assert_eq!(cfg.server.listen, "127.0.0.1:6432", "{}", c.toml);
        assert_eq!(note(&c, "listen_addr").kind, NoteKind::Partial);
        assert_eq!(note(&c, "auth_type").kind, NoteKind::Unmapped);
        assert!(cfg.pool.checkout_timeout > Duration::from_secs(86_400 * 365));
        assert!(cfg.pool.server_idle_timeout > Duration::from_secs(86_400 * 365));
        assert_eq!(cfg.pool.response_timeout, Duration::from_secs(30));
        assert_eq!(note(&c, "query_timeout").kind, NoteKind::Partial);
        assert_eq!(cfg.client_tls.min_protocol, TlsVersion::Tls13);
        assert_eq!(cfg.server_tls.sslmode, ServerTlsMode::Prefer);
        assert_eq!(cfg.pool.check_delay, Duration::from_millis(1));
    }

    #[test]
    fn garbage_is_an_error_naming_the_line() {
        let e = convert("[databases]\napp = host=h port=x\n", Path::new("p.ini")).unwrap_err().to_string();
        assert!(e.starts_with("p.ini:2:"), "{e}");
        let e = convert("[pgbouncer]\nlisten_port = 1\n", Path::new("p.ini")).unwrap_err().to_string();
        assert!(e.contains("no [databases] entry"), "{e}");
        let e = convert("[pgbouncer]\njust words\n", Path::new("p.ini")).unwrap_err().to_string();
        assert!(e.starts_with("p.ini:2:"), "{e}");
    }
}
