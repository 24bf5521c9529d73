//! pgpool.conf: backends, listening, pooling, load balancing, health checks,
//! failover, TLS and authentication.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::emit::{Toml, Value};
use super::map::{listen_host, Cx, Zero};
use super::parse::{self, name_of, Setting, Settings};
use super::values::{self, Unit, FOREVER};
use super::{Conversion, ConvertError, NoteKind, Source};

/// pgpool-II's defaults where ours differ.
const PGPOOL_PORT: u16 = 9999;
const NUM_INIT_CHILDREN: u64 = 32;
const SOCKET_DIR: &str = "/tmp";

/// Placeholders our failover commands expand, as pgpool does.
const PLACEHOLDERS: &str = "dhpDmHrRMPNS%";

/// The per-node settings: `backend_hostname0`...
const NODE_KEYS: [&str; 6] = [
    "backend_hostname",
    "backend_port",
    "backend_weight",
    "backend_data_directory",
    "backend_flag",
    "backend_application_name",
];

pub(crate) fn convert(text: &str, file: &Path) -> Result<Conversion, ConvertError> {
    let name = name_of(file);
    let (settings, overridden) = Settings::new(parse::conf(text, file)?);
    let mut cx = Cx {
        t: Toml::new(Source::Pgpool, &name),
        s: settings,
        section: "",
        dir: file.parent().unwrap_or(Path::new("")).to_path_buf(),
        who: "pgpool-II",
    };
    for (s, by) in overridden {
        let k = s.key.clone();
        cx.t.note(NoteKind::Overridden, &s, &k, format!("set again at {by}"));
    }
    let ids = nodes(&mut cx);
    if ids.is_empty() {
        return Err(ConvertError::NoServer {
            file: name,
            problem: "no backend_hostname0 (or other backend_hostnameN): nothing to put in [[nodes]]".into(),
        });
    }
    clustering_mode(&mut cx);
    listeners(&mut cx);
    pool(&mut cx);
    auth(&mut cx);
    routing(&mut cx, &ids);
    health(&mut cx);
    failover(&mut cx);
    tls(&mut cx);
    cx.boolean("log_connections", "server", "log_connections", Some(false));
    cx.boolean("log_statement", "server", "log_statements", None);
    for s in cx.s.rest() {
        let why = reason(&s.key);
        cx.t.unmapped(&s, why);
    }
    Ok(cx.t.finish())
}

/// `backend_hostname0` → `("backend_hostname", 0)`.
fn indexed(key: &str) -> Option<(&str, u32)> {
    let digits = key.len() - key.chars().rev().take_while(char::is_ascii_digit).count();
    let (prefix, n) = key.split_at(digits);
    if prefix.is_empty() || n.is_empty() {
        return None;
    }
    Some((prefix, n.parse().ok()?))
}

/// `[[nodes]]` from the backend settings, in pgpool's node order. Returns
/// the pgpool node ids in our order (our index i is pgpool's `ids[i]`).
fn nodes(cx: &mut Cx) -> Vec<u32> {
    let mut by_id: BTreeMap<u32, Vec<Setting>> = BTreeMap::new();
    for s in cx.s.take_where(|s| indexed(&s.key).is_some_and(|(p, _)| NODE_KEYS.contains(&p))) {
        if let Some((_, id)) = indexed(&s.key) {
            by_id.entry(id).or_default().push(s);
        }
    }
    let mut ids = Vec::new();
    for (id, settings) in by_id {
        let get = |p: &str| settings.iter().find(|s| indexed(&s.key).is_some_and(|(k, _)| k == p)).cloned();
        let Some(host) = get("backend_hostname") else {
            for s in &settings {
                cx.t.unmapped(s, format!("no backend_hostname{id}: pgpool ignores node {id} too"));
            }
            continue;
        };
        let i = ids.len();
        let t = cx.t.array("nodes", false);
        cx.t.table_comment(
            t,
            &format!(
                "pgpool-II node {id}{}",
                if i == 0 { " (the first node is the primary until the checks find another)" } else { "" }
            ),
        );
        let h = host.value.trim();
        let slot = if h.is_empty() {
            let slot = cx.t.set_in(t, "host", Value::Str(SOCKET_DIR.into()));
            cx.t.partial(slot, &host, "empty: the server's Unix socket in /tmp, as pgpool reaches it");
            slot
        } else {
            let slot = cx.t.set_in(t, "host", Value::Str(h.to_owned()));
            cx.t.cite_line(slot, &host);
            slot
        };
        if i as u32 != id {
            cx.t.partial(
                slot,
                &host,
                format!("pgpool's node {id} is node {i} here: %d and the other node ids in commands, and SHOW pool_nodes, count from 0 without gaps"),
            );
        }
        match get("backend_port") {
            Some(s) => match s.value.trim().parse::<u16>() {
                Ok(p) if p > 0 => {
                    let slot = cx.t.set_in(t, "port", Value::Int(u64::from(p)));
                    cx.t.cite_line(slot, &s);
                }
                _ => cx.t.unmapped(&s, "not a port number: 5432 is used"),
            },
            None => {
                cx.t.set_in(t, "port", Value::Int(5432));
            }
        }
        if let Some(s) = get("backend_weight") {
            match s.value.trim().parse::<f64>() {
                Ok(w) if w.is_finite() && w >= 0.0 => {
                    let slot = cx.t.set_in(t, "weight", Value::Float(w));
                    cx.t.cite_line(slot, &s);
                }
                _ => cx.t.unmapped(&s, "not a weight (a number >= 0): 1 is used"),
            }
        }
        if let Some(s) = get("backend_data_directory") {
            if !s.value.is_empty() {
                let slot = cx.t.set_in(t, "data_dir", Value::Str(s.value.clone()));
                cx.t.cite_line(slot, &s);
            }
        }
        if let Some(s) = get("backend_application_name") {
            if !s.value.is_empty() {
                let slot = cx.t.set_in(t, "application_name", Value::Str(s.value.clone()));
                cx.t.cite_line(slot, &s);
            }
        }
        if let Some(s) = get("backend_flag") {
            let flags = values::list(&s.value.to_ascii_uppercase(), '|');
            let mut odd = Vec::new();
            for f in &flags {
                match f.as_str() {
                    "ALLOW_TO_FAILOVER" => {}
                    "DISALLOW_TO_FAILOVER" => odd.push("every node may be failed over (no DISALLOW_TO_FAILOVER)"),
                    "ALWAYS_PRIMARY" | "ALWAYS_MASTER" => {
                        odd.push("no fixed primary (ALWAYS_PRIMARY): the checks find which node is the primary")
                    }
                    _ => odd.push("an unknown flag"),
                }
            }
            if odd.is_empty() {
                cx.t.not_needed(&s, "every node may be failed over, as ALLOW_TO_FAILOVER says");
            } else {
                cx.t.unmapped(&s, odd.join("; "));
            }
        }
        ids.push(id);
    }
    ids
}

/// `backend_clustering_mode` (or 3.x's master_slave_mode): only streaming
/// replication has an equivalent.
fn clustering_mode(cx: &mut Cx) {
    if let Some(s) = cx.take("backend_clustering_mode") {
        if s.value.trim().eq_ignore_ascii_case("streaming_replication") {
            cx.t.not_needed(&s, "streaming replication is what the pooler routes over");
        } else {
            cx.t.unmapped(
                &s,
                "only streaming replication has an equivalent: this conversion assumes it, check the nodes",
            );
        }
    }
    if let Some(s) = cx.take("master_slave_mode") {
        if values::boolean(&s.value) == Some(true) {
            cx.t.not_needed(&s, "primary/standby routing is what the pooler does");
        } else {
            cx.t.unmapped(&s, "off: pgpool does no primary/standby routing; the pooler always does");
        }
    }
    if let Some(s) = cx.take("master_slave_sub_mode") {
        if s.value.trim().eq_ignore_ascii_case("stream") {
            cx.t.not_needed(&s, "streaming replication is what the pooler routes over");
        } else {
            cx.t.unmapped(&s, "only streaming replication has an equivalent");
        }
    }
    if let Some(s) = cx.take("replication_mode") {
        if values::boolean(&s.value) == Some(true) {
            cx.t.unmapped(&s, "native replication mode (writes sent to every node) has no equivalent");
        } else {
            cx.t.not_needed(&s, "off, as the pooler is");
        }
    }
}

/// `[server]`: listen_addresses, port, the Unix socket.
fn listeners(cx: &mut Cx) {
    let port = cx.take("port");
    let p = match &port {
        Some(s) => match s.value.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                cx.t.unmapped(s, "not a port number: pgpool's 9999 is used");
                PGPOOL_PORT
            }
        },
        None => PGPOOL_PORT,
    };
    let addr = cx.take("listen_addresses");
    let value = addr.as_ref().map_or("localhost".to_owned(), |s| s.value.trim().to_owned());
    let items = values::list(&value, ',');
    let (host, mut why) = match items.first() {
        Some(first) => {
            let (h, w) = listen_host(first);
            (Some(h), w)
        }
        None => (None, None),
    };
    if items.len() > 1 {
        why = Some(format!(
            "{}the pooler listens on one address: {} (not on {})",
            why.map(|w| format!("{w}; ")).unwrap_or_default(),
            items[0],
            items[1..].join(", ")
        ));
    }
    let slot = cx.t.set("server", "listen", Value::Str(format!("{}:{p}", host.as_deref().unwrap_or("127.0.0.1"))));
    match &port {
        Some(s) => cx.t.cite_line(slot, s),
        None => cx.t.default_kept(slot, "port", "pgpool-II listens on 9999 by default; ours on 6432"),
    }
    match (&addr, why) {
        (Some(s), Some(w)) => cx.t.partial(slot, s, w),
        (Some(s), None) => cx.t.cite_line(slot, s),
        (None, _) => cx.t.default_kept(slot, "listen_addresses", "pgpool-II's default is localhost"),
    }
    if host.is_none() {
        let slot = cx.t.set("server", "listen_tcp", Value::Bool(false));
        if let Some(s) = &addr {
            cx.t.cite_line(slot, s);
        }
    }
    let dir = cx.take("unix_socket_directories").or_else(|| cx.take("socket_dir"));
    match dir {
        Some(s) => {
            let dirs = values::list(&s.value, ',');
            match dirs.first() {
                None => cx.t.not_needed(&s, "empty: no Unix socket"),
                Some(d) => {
                    let path = cx.path(d);
                    let slot = cx.t.set("server", "unix_socket_dir", Value::Str(path));
                    if dirs.len() > 1 {
                        cx.t.partial(slot, &s, format!("one socket directory: {d} (not {})", dirs[1..].join(", ")));
                    } else {
                        cx.t.cite_line(slot, &s);
                    }
                }
            }
        }
        None => {
            let slot = cx.t.set("server", "unix_socket_dir", Value::Str(SOCKET_DIR.into()));
            cx.t.default_kept(
                slot,
                "unix_socket_directories",
                "pgpool-II listens on a socket in /tmp by default; ours on none",
            );
        }
    }
    if let Some(s) = cx.take("unix_socket_permissions") {
        let v = s.value.trim();
        if u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o777) {
            cx.put("server", "unix_socket_mode", Value::Str(format!("{v:0>4}")), &s);
        } else {
            cx.t.unmapped(&s, "not an octal file mode; server.unix_socket_mode keeps 0777");
        }
    }
}

/// `[pool]` and the client limit.
fn pool(cx: &mut Cx) {
    let slot = cx.t.set("pool", "mode", Value::Str("session".into()));
    cx.t.comment(slot, "pgpool-II keeps a client on one server connection per node for its whole session");
    if let Some(s) = cx.take("connection_cache") {
        if values::boolean(&s.value) == Some(false) {
            cx.t.unmapped(&s, "off has no equivalent: a server connection is always kept for the next client");
        } else {
            cx.t.cite_line(slot, &s);
        }
    }
    let children = cx.take("num_init_children");
    let n = match &children {
        Some(s) => match values::integer(&s.value) {
            Some(n) if (1..=100_000).contains(&n) => Some(n),
            _ => {
                cx.t.unmapped(s, "not a number of processes from 1 to 100000");
                None
            }
        },
        None => Some(NUM_INIT_CHILDREN),
    };
    if let Some(n) = n {
        let c = cx.t.set("server", "max_client_connections", Value::Int(n));
        let sz = cx.t.set("pool", "size", Value::Int(n));
        let queue = "pgpool queues clients beyond it in the listen backlog; ours refuses them at once (53300)";
        let size = "one server connection per client per node at a time, as pgpool's processes hold them";
        match &children {
            Some(s) => {
                cx.t.partial(c, s, queue);
                cx.t.comment(sz, &format!("num_init_children = {n} ({}): {size}", s.at));
            }
            None => {
                cx.t.default_kept(c, "num_init_children", format!("pgpool-II's default is 32; {queue}"));
                cx.t.comment(sz, &format!("num_init_children not set (32): {size}"));
            }
        }
    }
    if let Some(s) = cx.take("max_pool") {
        cx.t.not_needed(
            &s,
            "connections are kept per (node, user, database), up to pool.size each, for any number of pairs",
        );
    }
    if let Some(s) = cx.take("reset_query_list") {
        let items: Vec<String> =
            values::list(&s.value, ';').into_iter().filter(|q| !q.eq_ignore_ascii_case("abort")).collect();
        let slot = cx.t.set("pool", "reset_query_list", Value::List(items));
        cx.t.cite_line(slot, &s);
        cx.t.comment(slot, "an open transaction is always rolled back first: ABORT is not needed");
    }
    // Idle server connections: child_life_time (an idle process exits with
    // its connections) and connection_life_time (an idle cached connection
    // closes); the shorter of those set applies.
    let child = cx.take("child_life_time");
    let conn = cx.take("connection_life_time");
    let secs = |s: &Option<Setting>, default: u64| match s {
        Some(s) => values::duration(&s.value, Unit::S),
        None => Some(Duration::from_secs(default)),
    };
    let (c, l) = (secs(&child, 300), secs(&conn, 0));
    let limits: Vec<Duration> = [c, l].into_iter().flatten().filter(|d| !d.is_zero()).collect();
    let idle = limits.iter().min().copied();
    let v = idle.map_or(FOREVER.to_owned(), values::fmt_duration);
    let slot = cx.t.set("pool", "server_idle_timeout", Value::Str(v));
    let what = "a server connection idle this long is closed, the shorter of child_life_time and connection_life_time";
    let mut any = false;
    for s in [&child, &conn].into_iter().flatten() {
        cx.t.partial(slot, s, what);
        any = true;
    }
    if !any {
        cx.t.default_kept(
            slot,
            "child_life_time",
            "pgpool-II's idle processes exit after 300 s, closing their connections",
        );
    }
    if let Some(s) = cx.take("client_idle_limit") {
        match values::duration(&s.value, Unit::S) {
            Some(d) if !d.is_zero() => {
                let v = values::fmt_duration(d);
                let a = cx.t.set("pool", "client_idle_timeout", Value::Str(v.clone()));
                cx.t.partial(a, &s, "ours closes only clients holding no server connection, and in session mode a client holds one for its session");
                let b = cx.t.set("pool", "idle_transaction_timeout", Value::Str(v));
                cx.t.comment(
                    b,
                    "client_idle_limit also applies inside a transaction (transaction and statement mode here)",
                );
            }
            Some(_) => cx.t.not_needed(&s, "0: off, as ours"),
            None => cx.t.unmapped(&s, "not a duration"),
        }
    }
    cx.duration(
        "authentication_timeout",
        "server",
        "client_login_timeout",
        Unit::S,
        Some(Duration::from_secs(60)),
        Zero::Forever,
    );
}

/// `[auth]`: pool_hba.conf and pool_passwd.
fn auth(cx: &mut Cx) {
    let hba = cx.take("enable_pool_hba");
    let on = hba.as_ref().and_then(|s| values::boolean(&s.value)) == Some(true);
    let file = cx.take("hba_file");
    if on {
        let path = file.as_ref().map_or_else(|| cx.path("pool_hba.conf"), |f| cx.path(&f.value));
        let slot = cx.t.set("auth", "hba_file", Value::Str(path));
        if let Some(s) = &hba {
            cx.t.partial(
                slot,
                s,
                "pool_hba.conf is in pg_hba.conf form; `pooler check` says which lines it cannot use (docs/ACCESS.md)",
            );
        }
    } else {
        let slot = cx.t.set("auth", "method", Value::Str("scram-sha-256".into()));
        let msg = "with enable_pool_hba off pgpool lets the servers authenticate clients; the pooler \
                   authenticates them itself, with SCRAM (or md5) against the password file";
        match &hba {
            Some(s) => cx.t.partial(slot, s, msg),
            None => cx.t.default_kept(slot, "enable_pool_hba", msg),
        }
        if let Some(f) = &file {
            cx.t.not_needed(f, "enable_pool_hba is off: pgpool does not read it");
        }
    }
    let note = "pool_passwd's user:secret lines are read as they are for md5 and SCRAM secrets and \
                plaintext; AES-encrypted entries (and the TEXT prefix) must be rewritten";
    match cx.take("pool_passwd") {
        Some(s) if s.value.trim().is_empty() => {
            cx.t.unmapped(&s, "empty: no password file; the pooler needs one to check passwords (auth.password_file)");
        }
        Some(s) => {
            let p = cx.path(s.value.trim());
            let slot = cx.t.set("auth", "password_file", Value::Str(p));
            cx.t.cite_line(slot, &s);
            cx.t.comment(slot, note);
        }
        None => {
            let p = cx.path("pool_passwd");
            let slot = cx.t.set("auth", "password_file", Value::Str(p));
            cx.t.default_kept(slot, "pool_passwd", "pgpool-II reads pool_passwd next to pgpool.conf by default");
            cx.t.comment(slot, note);
        }
    }
    if let Some(s) = cx.take("allow_clear_text_frontend_auth") {
        cx.t.unmapped(&s, "cleartext passwords are never asked of clients");
    }
}

/// `[routing]`. `ids[i]` is pgpool's id of our node `i`.
fn routing(cx: &mut Cx, ids: &[u32]) {
    cx.boolean("load_balance_mode", "routing", "load_balance", Some(true));
    cx.boolean("statement_level_load_balance", "routing", "statement_level_load_balance", None);
    cx.boolean("prefer_lower_delay_standby", "routing", "prefer_lowest_lag", None);
    if let Some(s) = cx.take("disable_load_balance_on_write") {
        let v = s.value.trim().to_ascii_lowercase();
        match v.as_str() {
            "off" | "transaction" | "trans_transaction" | "always" => {
                cx.put("routing", "disable_load_balance_on_write", Value::Str(v), &s);
            }
            "dml_adaptive" => {
                let slot = cx.t.set("routing", "disable_load_balance_on_write", Value::Str("transaction".into()));
                cx.t.partial(slot, &s, "no per-table tracking: a read-write transaction runs on the primary whole, and read-your-writes keeps later reads behind the session's writes");
            }
            _ => cx.t.unmapped(&s, "not off, transaction, trans_transaction, always or dml_adaptive"),
        }
    }
    let write = cx.take("write_function_list").or_else(|| cx.take("black_function_list"));
    let read = cx.take("read_only_function_list").or_else(|| cx.take("white_function_list"));
    let wl = write.as_ref().map(|s| values::list(&s.value, ',')).unwrap_or_default();
    let rl = read.as_ref().map(|s| values::list(&s.value, ',')).unwrap_or_default();
    if let Some(s) = &write {
        if !wl.is_empty() {
            cx.put("routing", "write_functions", Value::List(wl.clone()), s);
        }
    }
    if let Some(s) = &read {
        if !rl.is_empty() && !wl.is_empty() {
            cx.t.unmapped(s, "ours takes one function list: write_function_list is kept");
        } else if !rl.is_empty() {
            cx.put("routing", "read_only_functions", Value::List(rl), s);
        }
    }
    if let Some(s) = cx.take("primary_routing_query_pattern_list").or_else(|| cx.take("black_query_pattern_list")) {
        let patterns: Vec<String> = split_patterns(&s.value).into_iter().map(|p| anchored(&p)).collect();
        if !patterns.is_empty() {
            let slot = cx.t.set("routing", "primary_patterns", Value::List(patterns));
            cx.t.partial(slot, &s, "pgpool matches the whole statement: each pattern is anchored with ^(?:...)$ here");
        }
    }
    for (k, table) in [
        ("database_redirect_preference_list", "routing.database_preference"),
        ("app_name_redirect_preference_list", "routing.application_preference"),
    ] {
        let Some(s) = cx.take(k) else { continue };
        let mut skipped = Vec::new();
        let mut wrote = None;
        for item in values::list(&s.value, ',') {
            let Some((name, target)) = item.rsplit_once(':') else {
                skipped.push(item);
                continue;
            };
            let target = target.trim().to_ascii_lowercase();
            let (target, weight) = match target.split_once('(') {
                Some((t, _)) => (t.trim().to_owned(), true),
                None => (target, false),
            };
            let literal = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let value = match target.as_str() {
                "primary" => Some(Value::Str("primary".into())),
                "standby" => Some(Value::Str("standby".into())),
                n => {
                    n.parse::<u32>().ok().and_then(|id| ids.iter().position(|&x| x == id)).map(|i| Value::Int(i as u64))
                }
            };
            match (literal && !weight, value) {
                (true, Some(v)) => wrote = Some(cx.t.set(table, name, v)),
                _ => skipped.push(item),
            }
        }
        match (wrote, skipped.is_empty()) {
            (Some(slot), true) => cx.t.cite_line(slot, &s),
            (Some(slot), false) => cx.t.partial(
                slot,
                &s,
                format!(
                    "not converted: {} (regular-expression names and load weights have no equivalent)",
                    skipped.join(", ")
                ),
            ),
            (None, _) => {
                cx.t.unmapped(&s, "regular-expression names, load weights and unknown nodes have no equivalent")
            }
        }
    }
    if let Some(s) = cx.take("ignore_leading_white_space") {
        cx.t.not_needed(&s, "the classifier reads statements as PostgreSQL does, leading blanks included");
    }
}

/// pgpool's `;`-separated pattern list, `\;` being a semicolon inside one.
fn split_patterns(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&';') => {
                chars.next();
                cur.push(';');
            }
            ';' => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_owned());
                }
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// `p` anchored at both ends, as pgpool matches it.
fn anchored(p: &str) -> String {
    let inner = p.strip_prefix('^').unwrap_or(p);
    let inner = inner.strip_suffix('$').unwrap_or(inner);
    format!("^(?:{inner})$")
}

/// `[health]`.
fn health(cx: &mut Cx) {
    let hc = cx.take("health_check_period");
    let sr = cx.take("sr_check_period");
    let period = |s: &Option<Setting>, default: u64| match s {
        Some(s) => values::duration(&s.value, Unit::S),
        None => Some(Duration::from_secs(default)),
    };
    let set: Vec<Duration> = [period(&hc, 0), period(&sr, 10)].into_iter().flatten().filter(|d| !d.is_zero()).collect();
    match set.iter().min() {
        Some(&d) => {
            let slot = cx.t.set("health", "period", Value::Str(values::fmt_duration(d)));
            let given: Vec<&Setting> = [&hc, &sr].into_iter().flatten().collect();
            if set.len() > 1 && set[0] != set[1] {
                for s in given {
                    cx.t.partial(slot, s, "one period for health and replication checks: the shorter");
                }
            } else {
                for s in given {
                    cx.t.cite_line(slot, s);
                }
            }
            if sr.is_none() && hc.as_ref().and_then(|s| values::duration(&s.value, Unit::S)).is_none_or(|d| d.is_zero())
            {
                cx.t.default_kept(slot, "sr_check_period", "pgpool-II checks replication every 10 s by default");
            }
        }
        None => {
            for s in [&hc, &sr].into_iter().flatten() {
                cx.t.unmapped(s, "checks cannot be turned off: health.period keeps 2s");
            }
        }
    }
    match cx.peek("health_check_timeout").map(|s| (values::duration(&s.value, Unit::S), s)) {
        Some((Some(d), s)) if d.is_zero() => {
            cx.take("health_check_timeout");
            cx.t.unmapped(&s, "0 (no timeout) has no equivalent: health.timeout keeps 5s");
        }
        _ => {
            cx.duration("health_check_timeout", "health", "timeout", Unit::S, Some(Duration::from_secs(20)), Zero::Min);
        }
    }
    let sr_user = cx.take("sr_check_user");
    let hc_user = cx.take("health_check_user");
    match (&sr_user, &hc_user) {
        (Some(s), Some(h)) if s.value != h.value => {
            let slot = cx.t.set("health", "user", Value::Str(s.value.clone()));
            cx.t.cite_line(slot, s);
            cx.t.partial(slot, h, "one role for both checks: sr_check_user's, which must read pg_stat_replication");
        }
        (Some(s), other) | (None, other @ Some(s)) => {
            let slot = cx.t.set("health", "user", Value::Str(s.value.clone()));
            cx.t.cite_line(slot, s);
            if let Some(o) = other.as_ref().filter(|o| o.at != s.at) {
                cx.t.cite_line(slot, o);
            }
        }
        (None, None) => {}
    }
    for k in ["sr_check_password", "health_check_password"] {
        if let Some(s) = cx.take(k) {
            if s.value.is_empty() {
                cx.t.not_needed(&s, "empty: the role logs in without a password");
            } else {
                cx.t.unmapped(&s, "the checks' password comes from the password file: add the role there");
            }
        }
    }
    let sr_db = cx.take("sr_check_database");
    let hc_db = cx.take("health_check_database");
    let db = sr_db.iter().chain(hc_db.iter()).find(|s| !s.value.is_empty()).cloned();
    if let Some(s) = &db {
        cx.put("health", "database", Value::Str(s.value.clone()), s);
    }
    for s in [sr_db, hc_db].into_iter().flatten() {
        if Some(&s.at) != db.as_ref().map(|d| &d.at) {
            cx.t.not_needed(&s, "one database for both checks");
        }
    }
    cx.number("health_check_max_retries", "health", "max_retries", 0, u64::from(u32::MAX), Some(0));
    cx.duration("health_check_retry_delay", "health", "retry_delay", Unit::S, Some(Duration::from_secs(1)), Zero::Min);
    // connect_timeout (ms) bounds every connection pgpool opens.
    let ct = cx.take("connect_timeout");
    let d = match &ct {
        Some(s) => values::duration(&s.value, Unit::Ms),
        None => Some(Duration::from_secs(10)),
    };
    match d {
        Some(d) => {
            let v = if d.is_zero() || values::too_long(d) { FOREVER.to_owned() } else { values::fmt_duration(d) };
            let a = cx.t.set("pool", "connect_timeout", Value::Str(v.clone()));
            let b = cx.t.set("health", "connect_timeout", Value::Str(v));
            match &ct {
                Some(s) => {
                    cx.t.cite_line(a, s);
                    cx.t.cite_line(b, s);
                }
                None => {
                    cx.t.default_kept(a, "connect_timeout", "pgpool-II waits 10 s for a server connection by default");
                    cx.t.comment(b, "connect_timeout not set: pgpool-II's 10 s");
                }
            }
        }
        None => {
            if let Some(s) = &ct {
                cx.t.unmapped(s, "not a duration");
            }
        }
    }
    cx.number("delay_threshold", "health", "lag_threshold_bytes", 0, u64::MAX, Some(0));
    cx.duration("delay_threshold_by_time", "health", "lag_threshold", Unit::Ms, None, Zero::Off);
}

/// `[failover]`.
fn failover(cx: &mut Cx) {
    let mut any = false;
    for (src, alt, k) in [
        ("failover_command", None, "command"),
        ("follow_primary_command", Some("follow_master_command"), "follow_primary_command"),
        ("failback_command", None, "failback_command"),
    ] {
        let s = match cx.take(src) {
            Some(s) => Some(s),
            None => alt.and_then(|a| cx.take(a)),
        };
        let Some(s) = s else { continue };
        if s.value.trim().is_empty() {
            continue;
        }
        any = true;
        let slot = cx.put("failover", k, Value::Str(s.value.clone()), &s);
        let (unknown, main) = placeholders(&s.value);
        if main {
            cx.t.partial(slot, &s, "%M is the old primary's id here; in pgpool it is the old main node (the lowest live node id), which differs when the primary was not the lowest live node");
        }
        if !unknown.is_empty() {
            let list = unknown.iter().map(|c| format!("%{c}")).collect::<Vec<_>>().join(", ");
            cx.t.comment(slot, &format!("{list}: not expanded by the pooler (left as written)"));
            cx.t.note(NoteKind::Unmapped, &s, src, format!("placeholders {list} are not expanded (left as written)"));
        }
    }
    if any {
        let slot = cx.t.set("failover", "command_timeout", Value::Str("1h".into()));
        cx.t.default_kept(slot, "(a command timeout)", "pgpool-II waits for its commands however long they run; ours kills one after command_timeout (default 60s): 1h here");
    }
    let old_name = if cx.peek("fail_over_on_backend_error").is_some() && cx.peek("failover_on_backend_error").is_none()
    {
        "fail_over_on_backend_error"
    } else {
        "failover_on_backend_error"
    };
    cx.boolean(old_name, "failover", "failover_on_backend_error", Some(true));
    cx.boolean("auto_failback", "failover", "auto_failback", Some(false));
    cx.duration(
        "search_primary_node_timeout",
        "failover",
        "search_primary_node_timeout",
        Unit::S,
        Some(Duration::from_secs(300)),
        Zero::Forever,
    );
    if let Some(s) = cx.take("detach_false_primary") {
        match values::boolean(&s.value) {
            Some(true) => {
                let slot = cx.t.set("failover", "false_primary", Value::Str("most_standbys".into()));
                cx.t.partial(
                    slot,
                    &s,
                    "writes go to the primary more standbys stream from; the other is quarantined, not detached",
                );
            }
            Some(false) => {
                let slot = cx.t.set("failover", "false_primary", Value::Str("keep_current".into()));
                cx.t.partial(
                    slot,
                    &s,
                    "writes stay on the current primary; the other claimant is still quarantined (no reads, no writes)",
                );
            }
            None => cx.t.unmapped(&s, "not a boolean"),
        }
    }
}

/// Placeholders in `cmd` we do not expand, and whether `%M` is used.
fn placeholders(cmd: &str) -> (Vec<char>, bool) {
    let mut unknown = Vec::new();
    let mut main = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        match chars.next() {
            Some('M') => main = true,
            Some(x) if PLACEHOLDERS.contains(x) => {}
            Some(x) if !unknown.contains(&x) => unknown.push(x),
            _ => {}
        }
    }
    (unknown, main)
}

/// `[client_tls]`, `[server_tls]`.
fn tls(cx: &mut Cx) {
    match cx.take("ssl") {
        Some(s) if values::boolean(&s.value) == Some(true) => {
            let slot = cx.t.set("client_tls", "sslmode", Value::Str("prefer".into()));
            cx.t.partial(
                slot,
                &s,
                "TLS offered, plain text accepted; pgpool requires it only through hostssl lines of pool_hba.conf",
            );
            let slot = cx.t.set("server_tls", "sslmode", Value::Str("prefer".into()));
            cx.t.cite_line(slot, &s);
        }
        Some(s) => {
            let slot = cx.t.set("server_tls", "sslmode", Value::Str("disable".into()));
            cx.t.cite_line(slot, &s);
            cx.t.comment(slot, "pgpool-II uses TLS towards the servers only with ssl = on");
        }
        None => {
            let slot = cx.t.set("server_tls", "sslmode", Value::Str("disable".into()));
            cx.t.default_kept(
                slot,
                "ssl",
                "pgpool-II's default is off, and it then uses no TLS towards the servers either; ours prefers TLS",
            );
        }
    }
    cx.file("ssl_cert", "client_tls", "cert_file");
    cx.file("ssl_key", "client_tls", "key_file");
    if cx.file("ssl_ca_cert", "client_tls", "ca_file").is_some() {
        let v = cx.t.get("client_tls", "ca_file").cloned();
        if let Some(v) = v {
            let slot = cx.t.set("client_tls", "ca_file", v);
            cx.t.comment(
                slot,
                "clients then may present a certificate signed by it (required by hostssl ... cert lines)",
            );
        }
    }
    if let Some(s) = cx.take("ssl_prefer_server_ciphers") {
        cx.t.not_needed(&s, "rustls always chooses by its own preference");
    }
}

/// Why a leftover pgpool setting has no equivalent.
fn reason(k: &str) -> String {
    let base = indexed(k).map_or(k, |(p, _)| p);
    let watchdog = [
        "use_watchdog",
        "delegate_ip",
        "delegate_ip",
        "if_cmd_path",
        "if_up_cmd",
        "if_down_cmd",
        "arping_path",
        "arping_cmd",
        "trusted_servers",
        "trusted_server_command",
        "ping_path",
        "clear_memqcache_on_escalation",
        "failover_when_quorum_exists",
        "failover_require_consensus",
        "allow_multiple_failover_requests_from_node",
        "enable_consensus_with_half_votes",
        "hostname",
        "pgpool_port",
        "wd_port",
    ];
    let r = if watchdog.contains(&base)
        || ["wd_", "heartbeat_", "other_pgpool_", "other_wd_"].iter().any(|p| k.starts_with(p))
    {
        "watchdog: no equivalent yet (run the pooler behind your own virtual IP or load balancer)"
    } else if k.starts_with("recovery_") || k == "client_idle_limit_in_recovery" {
        "online recovery: not yet (rebuild standbys with your own tooling, e.g. the follow_primary_command script)"
    } else if k.starts_with("memqcache_") || k.contains("memqcache_table_list") || k == "memory_cache_enabled" {
        "query cache: no equivalent"
    } else if k.starts_with("pcp_") {
        "pcp: node control is on the admin console instead (pooler ctl, docs/ADMIN.md)"
    } else if k.starts_with("log_")
        || k.starts_with("syslog_")
        || ["logging_collector", "logdir", "pid_file_name", "debug_level", "client_min_messages"].contains(&k)
    {
        "the binary logs to standard error (RUST_LOG sets the level, --log-format text|json); server.log_connections \
         and server.log_statements are the only log settings"
    } else if base.starts_with("health_check_") && base != k {
        "per-node health check settings: [health] applies to every node"
    } else if [
        "insert_lock",
        "lobj_lock_table",
        "replicate_select",
        "replication_stop_on_mismatch",
        "failover_if_affected_tuples_mismatch",
    ]
    .contains(&k)
    {
        "native replication mode: no equivalent"
    } else if k.starts_with("relcache_")
        || ["enable_shared_relcache", "check_temp_table", "check_unlogged_table"].contains(&k)
    {
        "no equivalent: the pooler asks no catalog about tables to route"
    } else if k.starts_with("ssl_") {
        "TLS setting rustls does not offer (cipher suites, curves, CRLs, passphrases are its own or unsupported)"
    } else if ["listen_backlog_multiplier", "serialize_accept"].contains(&k) {
        "socket tuning is not configurable"
    } else if k == "child_max_connections" {
        "no equivalent: server connections are closed by age (pool.server_lifetime) and idleness, not after N clients"
    } else if k == "reserved_connections" {
        "clients over server.max_client_connections are always refused (53300)"
    } else if k == "auto_failback_interval" {
        "no equivalent: a node comes back as soon as its checks pass"
    } else if k == "failover_on_backend_shutdown" {
        "no equivalent: a server's shutdown is seen by the checks"
    } else if k == "health_check_test" {
        "test setting: no equivalent"
    } else {
        "no equivalent in this pooler"
    };
    r.into()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Config, FalsePrimaryRule, PoolMode, ServerTlsMode, WriteStickiness};

    /// A streaming-replication pgpool.conf as the pgpool-II 4.x sample and
    /// its users write it.
    const STREAMING: &str = r#"# ----------------------------
# pgPool-II configuration file
# ----------------------------
backend_clustering_mode = 'streaming_replication'
listen_addresses = '*'
port = 9999
unix_socket_directories = '/var/run/postgresql'
backend_hostname0 = 'pg-a.internal'
backend_port0 = 5432
backend_weight0 = 0
backend_data_directory0 = '/var/lib/postgresql/16/main'
backend_flag0 = 'ALLOW_TO_FAILOVER'
backend_application_name0 = 'pg_a'
backend_hostname1 = 'pg-b.internal'
backend_port1 = 5433
backend_weight1 = 2
backend_data_directory1 = '/var/lib/postgresql/16/main'
backend_flag1 = 'DISALLOW_TO_FAILOVER'
backend_application_name1 = 'pg_b'
enable_pool_hba = on
pool_passwd = 'pool_passwd'
num_init_children = 100
max_pool = 4
child_life_time = '5min'
connection_life_time = 600
client_idle_limit = 0
connection_cache = on
reset_query_list = 'ABORT; DISCARD ALL'
load_balance_mode = on
statement_level_load_balance = on
disable_load_balance_on_write = 'trans_transaction'
write_function_list = 'nextval,setval,audit_.*'
primary_routing_query_pattern_list = 'SELECT .* FOR UPDATE\;;.*pg_advisory_lock.*'
database_redirect_preference_list = 'reports:standby,postgres:primary,tenant_[0-9]+:1'
sr_check_period = 5
sr_check_user = 'pgpool'
sr_check_password = 'very-secret'
health_check_period = '10s'
health_check_timeout = 20
health_check_user = 'pgpool'
health_check_max_retries = 3
health_check_retry_delay = 2
connect_timeout = 10000
delay_threshold = 10000000
delay_threshold_by_time = '2s'
failover_command = '/etc/pgpool-II/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S %a'
follow_primary_command = '/etc/pgpool-II/follow_primary.sh %d %h %p %D %m %H %M %P %r %R'
failback_command = ''
failover_on_backend_error = off
auto_failback = on
search_primary_node_timeout = 0
detach_false_primary = on
ssl = on
ssl_key = 'server.key'
ssl_cert = 'server.crt'
ssl_ciphers = 'HIGH:MEDIUM:+3DES:!aNULL'
use_watchdog = on
wd_lifecheck_method = 'heartbeat'
heartbeat_hostname0 = 'pg-a.internal'
recovery_user = 'postgres'
recovery_1st_stage_command = 'recovery_1st_stage'
memory_cache_enabled = off
log_connections = on
logging_collector = on
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
    fn a_streaming_replication_pgpool_conf_converts_to_a_config_that_loads() {
        let c = convert(STREAMING, Path::new("/etc/pgpool-II/pgpool.conf")).unwrap();
        let cfg = config(&c);
        let nodes: Vec<(&str, u16, f64)> = cfg.nodes.iter().map(|n| (n.host.as_str(), n.port, n.weight)).collect();
        assert_eq!(nodes, [("pg-a.internal", 5432, 0.0), ("pg-b.internal", 5433, 2.0)]);
        assert_eq!(cfg.nodes[1].data_dir.as_deref(), Some("/var/lib/postgresql/16/main"));
        assert_eq!(cfg.nodes[1].application_name.as_deref(), Some("pg_b"));
        assert_eq!(cfg.server.listen, "0.0.0.0:9999");
        assert_eq!(cfg.server.unix_socket_dir, Some(PathBuf::from("/var/run/postgresql")));
        assert_eq!(cfg.server.max_client_connections, 100);
        assert_eq!((cfg.pool.mode, cfg.pool.size), (PoolMode::Session, 100));
        assert_eq!(cfg.pool.server_idle_timeout, Duration::from_secs(300));
        assert_eq!(cfg.pool.reset_query_list, ["DISCARD ALL"]);
        assert!(cfg.routing.load_balance);
        assert!(cfg.routing.statement_level_load_balance);
        assert_eq!(cfg.routing.disable_load_balance_on_write, WriteStickiness::TransTransaction);
        assert_eq!(cfg.routing.write_functions, ["nextval", "setval", "audit_.*"]);
        assert_eq!(cfg.routing.primary_patterns, ["^(?:SELECT .* FOR UPDATE;)$", "^(?:.*pg_advisory_lock.*)$"]);
        assert_eq!(cfg.routing.database_preference.len(), 2, "the regex name is left out");
        assert_eq!(note(&c, "database_redirect_preference_list").kind, NoteKind::Partial);
        assert_eq!(cfg.health.period, Duration::from_secs(5));
        assert_eq!(cfg.health.timeout, Duration::from_secs(20));
        assert_eq!(cfg.health.user, "pgpool");
        assert_eq!((cfg.health.max_retries, cfg.health.retry_delay), (3, Duration::from_secs(2)));
        assert_eq!(cfg.health.connect_timeout, Duration::from_secs(10));
        assert_eq!(cfg.health.lag_threshold_bytes, 10_000_000);
        assert_eq!(cfg.health.lag_threshold, Duration::from_secs(2));
        assert_eq!(cfg.failover.command, "/etc/pgpool-II/failover.sh %d %h %p %D %m %H %M %P %r %R %N %S %a");
        assert!(cfg.failover.follow_primary_command.starts_with("/etc/pgpool-II/follow_primary.sh %d"));
        assert!(cfg.failover.failback_command.is_empty());
        assert!(!cfg.failover.failover_on_backend_error);
        assert!(cfg.failover.auto_failback);
        assert!(cfg.failover.search_primary_node_timeout > Duration::from_secs(86_400 * 365));
        assert_eq!(cfg.failover.false_primary, FalsePrimaryRule::MostStandbys);
        assert_eq!(cfg.auth.hba_file, Some(PathBuf::from("/etc/pgpool-II/pool_hba.conf")));
        assert_eq!(cfg.auth.password_file, Some(PathBuf::from("/etc/pgpool-II/pool_passwd")));
        assert_eq!(cfg.client_tls.cert_file, Some(PathBuf::from("/etc/pgpool-II/server.crt")));
        assert_eq!(cfg.server_tls.sslmode, ServerTlsMode::Prefer);
        assert!(cfg.server.log_connections);
        // %a is not ours: named; %M maps only partly.
        assert!(c
            .notes
            .iter()
            .any(|n| n.setting == "failover_command" && n.kind == NoteKind::Unmapped && n.message.contains("%a")));
        assert!(c.notes.iter().any(|n| n.setting == "failover_command" && n.kind == NoteKind::Partial));
        for k in ["use_watchdog", "wd_lifecheck_method", "heartbeat_hostname0"] {
            assert!(note(&c, k).message.contains("watchdog"), "{k}");
        }
        for k in ["recovery_user", "recovery_1st_stage_command"] {
            assert!(note(&c, k).message.contains("not yet"), "{k}");
        }
        assert_eq!(note(&c, "backend_flag1").kind, NoteKind::Unmapped);
        assert_eq!(note(&c, "sr_check_password").kind, NoteKind::Unmapped);
        assert!(!c.toml.contains("very-secret"), "a password is never copied\n{}", c.toml);
        assert_eq!(note(&c, "ssl_ciphers").kind, NoteKind::Unmapped);
        assert_eq!(note(&c, "logging_collector").kind, NoteKind::Unmapped);
        assert_eq!(note(&c, "health_check_period").kind, NoteKind::Partial, "5 s and 10 s: one period");
    }

    #[test]
    fn pgpools_defaults_are_kept_where_ours_differ() {
        let c = convert("backend_hostname0 = 'db0'\nbackend_hostname1 = 'db1'\n", Path::new("pgpool.conf")).unwrap();
        let cfg = config(&c);
        assert_eq!(cfg.server.listen, "127.0.0.1:9999");
        assert_eq!(cfg.server.max_client_connections, 32);
        assert_eq!(cfg.server.client_login_timeout, Duration::from_secs(60));
        assert!(cfg.routing.load_balance, "pgpool-II 4's load_balance_mode is on");
        assert!(cfg.failover.failover_on_backend_error);
        assert!(!cfg.failover.auto_failback);
        assert_eq!(cfg.failover.search_primary_node_timeout, Duration::from_secs(300));
        assert_eq!(cfg.health.period, Duration::from_secs(10));
        assert_eq!((cfg.health.timeout, cfg.health.max_retries), (Duration::from_secs(20), 0));
        assert_eq!(cfg.health.lag_threshold_bytes, 0);
        assert_eq!(cfg.pool.server_idle_timeout, Duration::from_secs(300));
        assert_eq!(cfg.server_tls.sslmode, ServerTlsMode::Disable);
        assert!(!cfg.server.log_connections);
        assert!(c.notes.iter().filter(|n| n.kind == NoteKind::DefaultKept).count() >= 10, "{:#?}", c.notes);
        assert_eq!(c.unmapped(), 0, "{:#?}", c.notes);
    }

    #[test]
    fn gaps_in_node_ids_and_units_are_explained() {
        let conf = "backend_hostname0 = 'a'\nbackend_hostname2 = 'c'\nbackend_port2 = 5434\n\
                    backend_port5 = 1\nhealth_check_period = 0\nsr_check_period = 0\nchild_life_time = 0\n\
                    connect_timeout = '3s'\nclient_idle_limit = '1min'\nunix_socket_directories = '/tmp,/run/pg'\n\
                    database_redirect_preference_list = 'app:2'\n";
        let c = convert(conf, Path::new("p.conf")).unwrap();
        let cfg = config(&c);
        assert_eq!(cfg.nodes.len(), 2);
        assert!(note(&c, "backend_hostname2").message.contains("node 1 here"));
        assert_eq!(note(&c, "backend_port5").kind, NoteKind::Unmapped);
        assert_eq!(note(&c, "health_check_period").kind, NoteKind::Unmapped);
        assert_eq!(cfg.health.period, Duration::from_secs(2));
        assert!(cfg.pool.server_idle_timeout > Duration::from_secs(86_400 * 365));
        assert_eq!(cfg.pool.connect_timeout, Duration::from_secs(3));
        assert_eq!(cfg.pool.client_idle_timeout, Duration::from_secs(60));
        assert_eq!(cfg.pool.idle_transaction_timeout, Duration::from_secs(60));
        assert_eq!(note(&c, "unix_socket_directories").kind, NoteKind::Partial);
        assert_eq!(cfg.routing.database_preference.get("app"), Some(&crate::config::NodePreference::Node(1)));
    }

    #[test]
    fn no_backend_is_an_error() {
        let e = convert("port = 9999\n", Path::new("p.conf")).unwrap_err().to_string();
        assert!(e.contains("backend_hostname0"), "{e}");
        let e = convert("port = 'x\n", Path::new("p.conf")).unwrap_err().to_string();
        assert!(e.starts_with("p.conf:1:"), "{e}");
    }

    #[test]
    fn node_keys_split_into_name_and_id() {
        assert_eq!(indexed("backend_hostname12"), Some(("backend_hostname", 12)));
        assert_eq!(indexed("backend_hostname"), None);
        assert_eq!(indexed("12"), None);
    }

    #[test]
    fn patterns_split_on_unescaped_semicolons_and_are_anchored() {
        assert_eq!(split_patterns("SELECT \\* FROM t1\\;;.*t3.*; ;"), ["SELECT \\* FROM t1;", ".*t3.*"]);
        assert_eq!(anchored("^a|b$"), "^(?:a|b)$");
    }

    #[test]
    fn unknown_placeholders_are_found() {
        assert_eq!(placeholders("x %d %h %p %D %m %H %r %R %P %N %S %% %a %Z"), (vec!['a', 'Z'], false));
        assert!(placeholders("x %M").1);
    }
}
