//! A console answer as rows and columns, and its encoding on the wire
//! (RowDescription, DataRow, CommandComplete) in text or binary format.
//! No I/O.

use bytes::{BufMut, BytesMut};

/// PostgreSQL type oid of `text`.
const TEXT_OID: i32 = 25;
/// PostgreSQL type oid of `int8`.
const INT8_OID: i32 = 20;

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `text`.
    Text,
    /// `int8` (pgbouncer's numeric columns are bigint).
    Int,
}

/// One field of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Int(v.into())
    }
}
impl From<bool> for Value {
    /// pgbouncer shows flags as 0 / 1.
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// An answer with rows: its columns, its rows and its command tag.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) columns: Vec<(&'static str, Kind)>,
    pub(crate) rows: Vec<Vec<Value>>,
}

impl Table {
    /// A table with these columns and no rows yet.
    pub(crate) fn new(columns: &[(&'static str, Kind)]) -> Table {
        Table { columns: columns.to_vec(), rows: Vec::new() }
    }

    /// Appends a row; its length must match the columns (a mismatch is a
    /// bug of the view that built it, so the row is padded or cut rather
    /// than sending a malformed message).
    pub(crate) fn push(&mut self, mut row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row of the wrong width for {:?}", self.columns);
        row.resize(self.columns.len(), Value::Null);
        self.rows.push(row);
    }

    /// The column names, in order.
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|c| c.0).collect()
    }

    /// The text of `row`'s field in column `name` (tests).
    #[cfg(test)]
    pub(crate) fn get(&self, row: usize, name: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c.0 == name)?;
        self.rows.get(row)?.get(i)
    }
}

/// Result formats asked for by a Bind: none (all text), one for all
/// columns, or one per column. `true`: binary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Formats(pub(crate) Vec<bool>);

impl Formats {
    fn binary(&self, column: usize) -> bool {
        match self.0.len() {
            0 => false,
            1 => self.0[0],
            _ => self.0.get(column).copied().unwrap_or(false),
        }
    }
}

/// Writes the RowDescription of `table`'s columns.
pub(crate) fn row_description(out: &mut BytesMut, table: &Table, formats: &Formats) {
    let start = begin(out, b'T');
    out.put_i16(table.columns.len() as i16);
    for (i, (name, kind)) in table.columns.iter().enumerate() {
        out.put_slice(name.as_bytes());
        out.put_u8(0);
        out.put_i32(0); // no table
        out.put_i16(0); // no column number
        let (oid, size) = match kind {
            Kind::Text => (TEXT_OID, -1),
            Kind::Int => (INT8_OID, 8),
        };
        out.put_i32(oid);
        out.put_i16(size);
        out.put_i32(-1);
        out.put_i16(formats.binary(i).into());
    }
    finish(out, start);
}

/// Writes one DataRow per row of `table`.
pub(crate) fn data_rows(out: &mut BytesMut, table: &Table, formats: &Formats) {
    for row in &table.rows {
        let start = begin(out, b'D');
        out.put_i16(row.len() as i16);
        for (i, v) in row.iter().enumerate() {
            match (v, formats.binary(i), table.columns.get(i).map(|c| c.1)) {
                (Value::Null, _, _) => out.put_i32(-1),
                (Value::Int(n), true, Some(Kind::Int)) => {
                    out.put_i32(8);
                    out.put_i64(*n);
                }
                (Value::Int(n), _, _) => put_text(out, &n.to_string()),
                (Value::Text(s), _, _) => put_text(out, s),
            }
        }
        finish(out, start);
    }
}

/// Writes CommandComplete with `tag`.
pub(crate) fn command_complete(out: &mut BytesMut, tag: &str) {
    crate::protocol::write::command_complete(out, tag);
}

/// Writes a message with no body (`1` ParseComplete, `2` BindComplete,
/// `3` CloseComplete, `n` NoData, `I` EmptyQueryResponse).
pub(crate) fn empty_message(out: &mut BytesMut, tag: u8) {
    out.put_u8(tag);
    out.put_i32(4);
}

/// Writes ParameterDescription of a statement with no parameters.
pub(crate) fn no_parameters(out: &mut BytesMut) {
    out.put_u8(b't');
    out.put_i32(6);
    out.put_i16(0);
}

fn put_text(out: &mut BytesMut, s: &str) {
    out.put_i32(s.len() as i32);
    out.put_slice(s.as_bytes());
}

fn begin(out: &mut BytesMut, tag: u8) -> usize {
    out.put_u8(tag);
    let start = out.len();
    out.put_i32(0);
    start
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&[("database", Kind::Text), ("cl_active", Kind::Int)]);
        t.push(vec!["app".into(), 3i64.into()]);
        t.push(vec![Value::Null, 7i64.into()]);
        t
    }

    #[test]
    fn a_row_description_names_columns_with_their_types_and_lengths_add_up() {
        let mut out = BytesMut::new();
        row_description(&mut out, &sample(), &Formats::default());
        assert_eq!(out[0], b'T');
        let len = i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
        assert_eq!(&out[5..7], &2i16.to_be_bytes());
        assert_eq!(&out[7..16], b"database\0");
        // database: table 0, column 0, oid 25.
        assert_eq!(&out[22..26], &TEXT_OID.to_be_bytes());
    }

    #[test]
    fn integers_go_out_as_text_unless_binary_is_asked_for() {
        let mut text = BytesMut::new();
        data_rows(&mut text, &sample(), &Formats::default());
        // D, len, 2 fields, "app", "3"
        assert_eq!(&text[..7], &[b'D', 0, 0, 0, 18, 0, 2]);
        assert_eq!(&text[7..18], &[0, 0, 0, 3, b'a', b'p', b'p', 0, 0, 0, 1]);
        assert_eq!(text[18], b'3');
        let mut bin = BytesMut::new();
        data_rows(&mut bin, &sample(), &Formats(vec![true]));
        assert_eq!(&bin[14..26], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 3]);
        // The NULL of the second row.
        assert!(bin.windows(4).any(|w| w == [0xff, 0xff, 0xff, 0xff]));
    }
}
