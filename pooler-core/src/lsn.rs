//! WAL positions (LSNs) as PostgreSQL prints them: `16/B374D848`.

/// Parses a WAL position as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Prints a WAL position as PostgreSQL does.
pub(crate) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_print_as_postgresql_does_and_parse_back() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(parse_lsn(""), None);
        for v in [0u64, 1, 0x3000060, (0x16 << 32) | 0xB374D848, u64::MAX] {
            assert_eq!(parse_lsn(&format_lsn(v)), Some(v));
        }
        assert_eq!(format_lsn(0x3000060), "0/3000060");
    }
}
