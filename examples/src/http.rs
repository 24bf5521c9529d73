//! Just enough HTTP/1.1 and JSON for the examples, on tokio alone: one
//! request per connection (`Connection: close`), bodies sized by
//! `Content-Length`, flat JSON objects. A real service would use hyper or
//! axum and serde_json; the examples stay free of them.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest head (request or status line and headers) read.
const MAX_HEAD: usize = 16 * 1024;
/// Longest body read.
const MAX_BODY: usize = 1024 * 1024;

/// A request as the server side read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// The request target, e.g. `/failover`.
    pub path: String,
    /// Header names (lowercased) and values.
    pub headers: Vec<(String, String)>,
    /// The body, as text (lossy for non-UTF-8).
    pub body: String,
}

impl Request {
    /// The value of header `name` (lowercase), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads a head (up to the blank line) and the body its `Content-Length`
/// announces: the head's lines and the body. Without a `Content-Length`, a
/// request has no body and a response's body runs to the end of the stream.
async fn read_message(stream: &mut TcpStream, response: bool) -> io::Result<(Vec<String>, String)> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(bad("head too long"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let lines: Vec<String> = head.split("\r\n").map(str::to_owned).collect();
    let length = lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>().map_err(|_| bad("bad Content-Length")))
        .transpose()?;
    let mut body = buf[head_end + 4..].to_vec();
    match length {
        Some(n) if n > MAX_BODY => return Err(bad("body too long")),
        Some(n) => {
            while body.len() < n {
                let mut chunk = [0u8; 4096];
                let got = stream.read(&mut chunk).await?;
                if got == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                body.extend_from_slice(&chunk[..got]);
            }
            body.truncate(n);
        }
        None if response => {
            stream.take(MAX_BODY as u64).read_to_end(&mut body).await?;
        }
        None => body.clear(),
    }
    Ok((lines, String::from_utf8_lossy(&body).into_owned()))
}

/// Reads one request (bounded by `timeout`).
pub async fn read_request(stream: &mut TcpStream, timeout: Duration) -> io::Result<Request> {
    let (lines, body) = tokio::time::timeout(timeout, read_message(stream, false))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let mut first = lines.first().map(|l| l.split(' ')).ok_or_else(|| bad("no request line"))?;
    let (Some(method), Some(path)) = (first.next(), first.next()) else {
        return Err(bad("bad request line"));
    };
    let headers = lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Request { method: method.to_owned(), path: path.to_owned(), headers, body })
}

/// Writes a whole response and closes the connection's write side.
pub async fn write_response(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        400 => "Bad Request",
        412 => "Precondition Failed",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Sends one request to `addr` (`host:port`) and reads the answer: its
/// status code and body. `body` is sent as JSON when given.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(b) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        if let Some(b) = body {
            stream.write_all(b.as_bytes()).await?;
        }
        let (lines, body) = read_message(&mut stream, true).await?;
        let status = lines
            .first()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Appends `s` to `out` as a JSON string, quotes included.
pub fn push_json_string(out: &mut String, s: &str) {
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
}

/// A flat JSON object of string fields, in order: `{"k":"v",...}`.
pub fn json_object(fields: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, k);
        out.push(':');
        push_json_string(&mut out, v);
    }
    out.push('}');
    out
}

/// The string fields of a flat JSON object (`{"leader": "pg0", ...}`);
/// fields of other types are skipped. `None` when `text` is not such an
/// object.
pub fn parse_flat_object(text: &str) -> Option<Vec<(String, String)>> {
    let mut p = text.trim().chars().peekable();
    let mut fields = Vec::new();
    let skip_ws = |p: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while p.peek().is_some_and(|c| c.is_whitespace()) {
            p.next();
        }
    };
    if p.next()? != '{' {
        return None;
    }
    skip_ws(&mut p);
    if p.peek() == Some(&'}') {
        p.next();
        return p.next().is_none().then_some(fields);
    }
    loop {
        skip_ws(&mut p);
        let key = parse_string(&mut p)?;
        skip_ws(&mut p);
        if p.next()? != ':' {
            return None;
        }
        skip_ws(&mut p);
        if p.peek() == Some(&'"') {
            fields.push((key, parse_string(&mut p)?));
        } else {
            // A number, true, false or null: skipped (no nesting here).
            while p.peek().is_some_and(|&c| c != ',' && c != '}') {
                if matches!(p.next(), Some('{' | '[' | '"')) {
                    return None;
                }
            }
        }
        skip_ws(&mut p);
        match p.next()? {
            ',' => continue,
            '}' => break,
            _ => return None,
        }
    }
    skip_ws(&mut p);
    p.next().is_none().then_some(fields)
}

/// A JSON string at the front of `p`, unescaped.
fn parse_string(p: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    if p.next()? != '"' {
        return None;
    }
    let mut out = String::new();
    loop {
        match p.next()? {
            '"' => return Some(out),
            '\\' => match p.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = (0..4).map(|_| p.next()).collect::<Option<_>>()?;
                    // Surrogate pairs are not needed here: replaced.
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('\u{fffd}'));
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_round_trip_through_the_flat_parser() {
        let tricky = "a \"quoted\" \\ back\nslash\t\u{1}é";
        let text = json_object(&[("leader", "pg0"), ("candidate", tricky)]);
        assert_eq!(
            parse_flat_object(&text),
            Some(vec![("leader".into(), "pg0".into()), ("candidate".into(), tricky.into())])
        );
        assert_eq!(
            parse_flat_object(r#" { "n": 1, "s" : "x\/y\u0041", "b": true } "#),
            Some(vec![("s".into(), "x/yA".into())])
        );
        assert_eq!(parse_flat_object("{}"), Some(vec![]));
        for bad in ["", "[]", "{", r#"{"a"}"#, r#"{"a":"b""#, r#"{"a":{"b":"c"}}"#, r#"{"a":"b"} x"#] {
            assert_eq!(parse_flat_object(bad), None, "{bad}");
        }
    }
}
