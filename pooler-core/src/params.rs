//! Session parameters as SQL: what a startup packet asks for, and the
//! statements that give a server connection a client's settings.

use std::sync::Arc;

use crate::backend::ServerConn;
use crate::backend::SharedParams;
use crate::error::Error;
use crate::protocol::StartupMessage;

/// Reported parameters a client cannot set: never restored.
const NOT_SETTABLE: &[&str] = &[
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "session_authorization",
    "in_hot_standby",
];

/// The settings a startup packet asks for: its parameters other than user,
/// database and protocol options, and the `-c` items of `options`.
pub(crate) fn startup_settings(startup: &StartupMessage) -> Result<Vec<(String, String)>, Error> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (k, v) in &startup.params {
        match k.as_str() {
            "user" | "database" | "replication" => {}
            k if k.starts_with("_pq_.") => {}
            "options" => wanted.extend(parse_options(v)?),
            _ => wanted.push((k.clone(), v.clone())),
        }
    }
    Ok(wanted)
}

/// Parameters whose value is one scalar, set with a plain `SET` (a utility
/// statement: no planning). Matched without regard to case, like GUC names.
const SCALAR_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "extra_float_digits",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "work_mem",
];

/// One simple-query string setting every `(name, value)`: `SET` for the
/// well-known scalar parameters, `set_config()` for the rest, which keeps list
/// values such as `search_path = a,b` exactly as a startup packet means them.
pub(crate) fn param_statements<'a>(params: impl Iterator<Item = &'a (String, String)>) -> String {
    let mut sets = String::new();
    let mut calls = String::new();
    for (k, v) in params {
        if let Some(name) = SCALAR_PARAMS.iter().find(|n| n.eq_ignore_ascii_case(k)) {
            sets.push_str("SET ");
            sets.push_str(name);
            sets.push_str(" = ");
            crate::sql::push_literal(&mut sets, v);
            sets.push_str("; ");
        } else {
            calls.push_str(if calls.is_empty() { "SELECT " } else { ", " });
            calls.push_str("pg_catalog.set_config(");
            crate::sql::push_literal(&mut calls, k);
            calls.push_str(", ");
            crate::sql::push_literal(&mut calls, v);
            calls.push_str(", false)");
        }
    }
    sets + &calls
}

/// Parses the `options` startup parameter: `-c name=value` and `--name=value`
/// items separated by spaces, with `\` escaping the next character.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, Error> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let bad = |w: &str| {
        Error::Refused {
        code: "08P01",
        message: format!("invalid command-line argument in startup packet options: {w:?} (only -c name=value and --name=value are supported)"),
    }
    };
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let assignment = if w == "-c" {
            it.next().ok_or_else(|| bad("-c"))?
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_owned()
        } else {
            return Err(bad(&w));
        };
        let (k, v) = assignment.split_once('=').ok_or_else(|| bad(&assignment))?;
        out.push((k.replace('-', "_"), v.to_owned()));
    }
    Ok(out)
}

/// Whether `conn` has a client's parameters already (reported ones
/// `params`, unreported ones `extra`), so nothing need be run before it is
/// lent: the usual case, checked before every transaction. Once the
/// connection's list was found equal to `params`, a pointer comparison.
pub(crate) fn has_settings(conn: &mut ServerConn, params: &SharedParams, extra: &[(String, String)]) -> bool {
    if extra != conn.extra.as_slice() {
        return false;
    }
    if conn.params_match.as_ref().is_some_and(|m| Arc::ptr_eq(m, params)) {
        return true;
    }
    if params.as_slice() == conn.params() {
        conn.params_match = Some(params.clone());
        return true;
    }
    false
}

/// The statements that give `conn` a client's parameters: reported ones
/// `params`, unreported ones `extra` (any other unreported setting reset).
pub(crate) fn restore_sql(params: &[(String, String)], extra: &[(String, String)], conn: &ServerConn) -> String {
    restore_statements(params, extra, conn.params(), &conn.extra)
}

/// [`restore_sql`] over the connection's reported parameters `has` and its
/// unreported settings `has_extra`.
fn restore_statements(
    params: &[(String, String)],
    extra: &[(String, String)],
    has: &[(String, String)],
    has_extra: &[(String, String)],
) -> String {
    // The usual case, cheaply: the connection already has the client's
    // settings (same server, same user, nothing changed).
    if params == has && extra == has_extra {
        return String::new();
    }
    let current = |k: &str| has.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let reported = params.iter().filter(|(k, v)| {
        !NOT_SETTABLE.iter().any(|n| n.eq_ignore_ascii_case(k)) && current(k).is_some_and(|cur| cur != v)
    });
    let wanted = extra.iter().filter(|(k, v)| !has_extra.iter().any(|(ck, cv)| ck == k && cv == v));
    let mut sql = param_statements(reported.chain(wanted));
    for (k, _) in has_extra {
        if !extra.iter().any(|(ek, _)| ek == k) {
            // `SET`s end with "; " already (an empty statement between would
            // be harmless, but is noise in the server's log).
            if !sql.is_empty() && !sql.ends_with("; ") {
                sql.push_str("; ");
            }
            sql.push_str("RESET ");
            push_ident(&mut sql, k);
        }
    }
    sql
}

/// Appends `name` as a quoted identifier.
fn push_ident(sql: &mut String, name: &str) {
    // Dotted custom names (`myapp.tenant`) are written as they are: RESET takes them unquoted.
    if name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.') {
        sql.push_str(name);
    } else {
        sql.push('"');
        sql.push_str(&name.replace('"', "\"\""));
        sql.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parameter_yields_settings() {
        let got = parse_options("-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB").unwrap();
        assert_eq!(
            got,
            vec![
                ("search_path".to_string(), "a,b".to_string()),
                ("statement_timeout".to_string(), "5s".to_string()),
                ("work_mem".to_string(), "64MB".to_string()),
            ]
        );
        let got = parse_options(r"-c application_name=my\ app").unwrap();
        assert_eq!(got, vec![("application_name".to_string(), "my app".to_string())]);
    }

    #[test]
    fn options_parameter_refuses_other_switches() {
        assert!(parse_options("-d 5").is_err());
        assert!(parse_options("-c").is_err());
        assert!(parse_options("-c novalue").is_err());
    }

    #[test]
    fn scalar_parameters_use_set_and_others_set_config() {
        let params = [
            ("Application_Name".to_string(), "it's".to_string()),
            ("search_path".to_string(), "a,b".to_string()),
            ("TimeZone".to_string(), "UTC".to_string()),
        ];
        assert_eq!(
            param_statements(params.iter()),
            "SET application_name = E'it''s'; SET timezone = E'UTC'; \
             SELECT pg_catalog.set_config(E'search_path', E'a,b', false)"
        );
        assert_eq!(param_statements([].iter()), "");
    }

    #[test]
    fn literals_are_escaped() {
        let mut s = String::new();
        crate::sql::push_literal(&mut s, r"it's a \ test");
        assert_eq!(s, r"E'it''s a \\ test'");
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_connection_gets_the_clients_parameters_back_and_loses_other_clients_settings() {
        let client = kv(&[("application_name", "app"), ("TimeZone", "UTC"), ("server_version", "15.0")]);
        let client_extra = kv(&[("statement_timeout", "5s")]);
        let conn = kv(&[("application_name", "other"), ("TimeZone", "UTC"), ("server_version", "15.1")]);
        let conn_extra = kv(&[("work_mem", "64MB"), ("MyApp.Tenant", "a")]);
        assert_eq!(
            restore_statements(&client, &client_extra, &conn, &conn_extra),
            "SET application_name = E'app'; SET statement_timeout = E'5s'; RESET work_mem; RESET \"MyApp.Tenant\""
        );
        // Nothing to do when the connection already has the client's settings.
        assert_eq!(restore_statements(&client, &client_extra, &client, &client_extra), "");
        // server_version is never set, even where it differs.
        assert!(!restore_statements(&client, &[], &conn, &[]).contains("server_version"));
    }
}
