//! `pooler ctl`: the admin console from the command line. Each subcommand
//! becomes one console command, run over the PostgreSQL protocol (so it
//! works against a pooler anywhere, with the same logins); answers print as
//! a table, or as JSON with `--json`.

use anyhow::{bail, Context, Result};
use tokio_postgres::SimpleQueryMessage;

/// How to reach the console and what to run.
#[derive(Debug)]
pub struct Ctl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub json: bool,
    pub command: String,
}

pub const USAGE: &str = "\
pooler ctl [--host H] [--port P] [--user U] [--json] COMMAND
    show WHAT                  SHOW pools|clients|servers|stats|databases|nodes|... (SHOW HELP lists them)
    kill-client ID | kill DB | reconnect [DB] | disable DB | enable DB
    pause [DB] | resume [DB] | suspend | wait-close [DB] | reload
    shutdown [wait-for-servers|wait-for-clients]
    set KEY VALUE
    node attach|detach|promote|recover N [switchover]
    raw 'CONSOLE COMMAND'
  Defaults: --host 127.0.0.1 --port 6432 --user $PGUSER or pooler; the password comes from $PGPASSWORD.
";

/// The console command for a ctl subcommand's words.
pub fn console_command(words: &[String]) -> Result<String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let db = |cmd: &str, rest: &[&str]| -> Result<String> {
        match rest {
            [] => Ok(cmd.to_owned()),
            [d] => Ok(format!("{cmd} {}", quote(d))),
            _ => bail!("{cmd}: at most one database name"),
        }
    };
    Ok(match w.as_slice() {
        ["show", what] => format!("SHOW {what}"),
        ["kill-client", id] => {
            let id: u64 = id.parse().with_context(|| format!("kill-client: {id:?} is not a client id"))?;
            format!("KILL_CLIENT {id}")
        }
        ["kill", d] => format!("KILL {}", quote(d)),
        ["disable", d] => format!("DISABLE {}", quote(d)),
        ["enable", d] => format!("ENABLE {}", quote(d)),
        ["reconnect", rest @ ..] => db("RECONNECT", rest)?,
        ["pause", rest @ ..] => db("PAUSE", rest)?,
        ["resume", rest @ ..] => db("RESUME", rest)?,
        ["wait-close", rest @ ..] => db("WAIT_CLOSE", rest)?,
        ["suspend"] => "SUSPEND".into(),
        ["reload"] => "RELOAD".into(),
        ["shutdown"] => "SHUTDOWN".into(),
        ["shutdown", "wait-for-servers"] => "SHUTDOWN WAIT_FOR_SERVERS".into(),
        ["shutdown", "wait-for-clients"] => "SHUTDOWN WAIT_FOR_CLIENTS".into(),
        ["set", key, value] => format!("SET {key} = '{}'", value.replace('\'', "''")),
        ["node", verb @ ("attach" | "detach" | "promote" | "recover"), n, rest @ ..] => {
            let n: usize = n.parse().with_context(|| format!("node {verb}: {n:?} is not a node number"))?;
            let tail = match (*verb, rest) {
                (_, []) => "",
                ("promote", ["switchover"]) => " SWITCHOVER",
                _ => bail!("node {verb}: unexpected {rest:?}"),
            };
            format!("{} NODE {n}{tail}", verb.to_ascii_uppercase())
        }
        ["raw", text] => (*text).to_owned(),
        [] => bail!("ctl needs a command\n\n{USAGE}"),
        other => bail!("unknown ctl command {:?}\n\n{USAGE}", other.join(" ")),
    })
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One answer: column names and rows (`None`: NULL).
type Answer = (Vec<String>, Vec<Vec<Option<String>>>, String);

/// Runs `ctl.command` on the console and prints the answer.
pub async fn run(ctl: &Ctl) -> Result<()> {
    let mut config = tokio_postgres::Config::new();
    config.host(&ctl.host).port(ctl.port).user(&ctl.user).dbname("pooler");
    config.connect_timeout(std::time::Duration::from_secs(10));
    if let Ok(p) = std::env::var("PGPASSWORD") {
        config.password(p);
    }
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot reach the admin console at {}:{} as {}", ctl.host, ctl.port, ctl.user))?;
    let conn = tokio::spawn(conn);
    let messages = client.simple_query(&ctl.command).await.map_err(|e| match e.as_db_error() {
        Some(db) => anyhow::anyhow!("{}: {} ({})", ctl.command, db.message(), db.code().code()),
        None => anyhow::anyhow!("{}: {e}", ctl.command),
    })?;
    drop(client);
    let _ = conn.await;
    let answers = collect(messages);
    let mut out = String::new();
    if ctl.json {
        out.push_str(&to_json(&answers));
        out.push('\n');
    } else {
        for a in &answers {
            out.push_str(&to_table(a));
        }
    }
    print!("{out}");
    Ok(())
}

fn collect(messages: Vec<SimpleQueryMessage>) -> Vec<Answer> {
    let mut answers = Vec::new();
    let (mut columns, mut rows) = (Vec::new(), Vec::new());
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                columns = cols.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                if columns.is_empty() {
                    columns = r.columns().iter().map(|c| c.name().to_owned()).collect();
                }
                rows.push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect());
            }
            SimpleQueryMessage::CommandComplete(_) => {
                answers.push((std::mem::take(&mut columns), std::mem::take(&mut rows), String::new()));
            }
            _ => {}
        }
    }
    answers
}

/// A readable table: header, a rule, the rows; `OK` for an answer without rows.
pub fn to_table((columns, rows, _): &Answer) -> String {
    if columns.is_empty() {
        return "OK\n".into();
    }
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in rows {
        for (i, v) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(v.as_deref().unwrap_or("").chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s: String = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join(" | ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(columns.iter().map(String::as_str).collect());
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(|v| v.as_deref().unwrap_or("")).collect()));
    }
    out.push_str(&format!("({} row{})\n", rows.len(), if rows.len() == 1 { "" } else { "s" }));
    out
}

/// JSON: one answer gives an array of objects (column: value, NULL as
/// null); several give an array of those; an answer without rows `{"ok":true}`.
pub fn to_json(answers: &[Answer]) -> String {
    let one = |(columns, rows, _): &Answer| -> String {
        if columns.is_empty() {
            return "{\"ok\":true}".into();
        }
        let objects: Vec<String> = rows
            .iter()
            .map(|r| {
                let fields: Vec<String> = columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| format!("{}:{}", json_string(c), v.as_deref().map_or("null".into(), json_string)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            })
            .collect();
        format!("[{}]", objects.join(","))
    };
    match answers {
        [a] => one(a),
        many => format!("[{}]", many.iter().map(one).collect::<Vec<_>>().join(",")),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn subcommands_become_console_commands() {
        assert_eq!(console_command(&words("show pools")).unwrap(), "SHOW pools");
        assert_eq!(console_command(&words("pause app")).unwrap(), "PAUSE \"app\"");
        assert_eq!(console_command(&words("reconnect")).unwrap(), "RECONNECT");
        assert_eq!(console_command(&words("node promote 1")).unwrap(), "PROMOTE NODE 1");
        assert_eq!(console_command(&words("node promote 1 switchover")).unwrap(), "PROMOTE NODE 1 SWITCHOVER");
        assert_eq!(console_command(&words("kill-client 7")).unwrap(), "KILL_CLIENT 7");
        assert_eq!(console_command(&words("shutdown wait-for-clients")).unwrap(), "SHUTDOWN WAIT_FOR_CLIENTS");
        assert_eq!(console_command(&words("set a it's")).unwrap(), "SET a = 'it''s'");
        assert!(console_command(&words("kill-client x")).is_err());
        assert!(console_command(&words("node attach one")).is_err());
        assert!(console_command(&words("frobnicate")).is_err());
    }

    #[test]
    fn answers_print_as_aligned_tables_and_as_json() {
        let a: Answer = (
            vec!["database".into(), "cl_active".into()],
            vec![vec![Some("app".into()), Some("12".into())], vec![Some("x\"y".into()), None]],
            String::new(),
        );
        assert_eq!(to_table(&a), "database | cl_active\n---------+----------\napp      | 12\nx\"y      |\n(2 rows)\n");
        assert_eq!(
            to_json(std::slice::from_ref(&a)),
            r#"[{"database":"app","cl_active":"12"},{"database":"x\"y","cl_active":null}]"#
        );
        let done: Answer = (Vec::new(), Vec::new(), String::new());
        assert_eq!(to_json(&[done.clone()]), r#"{"ok":true}"#);
        assert_eq!(to_table(&done), "OK\n");
    }
}
