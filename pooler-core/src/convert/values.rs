//! Reading the other programs' values: booleans, numbers with or without a
//! unit, lists; writing our durations.

use std::time::Duration;

/// The unit of a number written without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

/// Longest duration our configuration accepts, used where the other program
/// means "never": 10 years.
pub(crate) const FOREVER: &str = "87600h";

/// `on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0` (any case).
pub(crate) fn boolean(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// A duration: a number (fractions allowed) in `unit`, or with its own unit
/// (`us`, `ms`, `s`, `min`/`m`, `h`, `d`, as PostgreSQL spells them).
pub(crate) fn duration(s: &str, unit: Unit) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match suffix.trim().to_ascii_lowercase().as_str() {
        "" => match unit {
            Unit::Ms => n / 1000.0,
            Unit::S => n,
        },
        "us" => n / 1_000_000.0,
        "ms" => n / 1000.0,
        "s" | "sec" | "secs" => n,
        "min" | "m" | "mins" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Our spelling of a duration: the largest unit that states it exactly
/// (`"2h"`, `"90s"`, `"250ms"`); at least 1 ms unless zero.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        ms = 1;
    }
    if ms == 0 {
        "0s".into()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// True when `d` is beyond what our configuration accepts (10 years).
pub(crate) fn too_long(d: Duration) -> bool {
    d > Duration::from_secs(10 * 365 * 86_400)
}

/// A whole number >= 0.
pub(crate) fn integer(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// Items of a list separated by `sep`, trimmed, empty ones left out.
pub(crate) fn list(s: &str, sep: char) -> Vec<String> {
    s.split(sep).map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(duration("10", Unit::S), Some(Duration::from_secs(10)));
        assert_eq!(duration("10", Unit::Ms), Some(Duration::from_millis(10)));
        assert_eq!(duration("0.5", Unit::S), Some(Duration::from_millis(500)));
        assert_eq!(duration("'5min'".trim_matches('\''), Unit::Ms), Some(Duration::from_secs(300)));
        assert_eq!(duration("10s", Unit::Ms), Some(Duration::from_secs(10)));
        assert_eq!(duration("1 h", Unit::S), Some(Duration::from_secs(3600)));
        assert_eq!(duration("2d", Unit::S), Some(Duration::from_secs(172_800)));
        assert_eq!(duration("soon", Unit::S), None);
        assert_eq!(duration("5 parsecs", Unit::S), None);
        assert_eq!(duration("-1", Unit::S), None);
    }

    #[test]
    fn our_durations_use_the_largest_exact_unit() {
        assert_eq!(fmt_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(fmt_duration(Duration::from_secs(600)), "10m");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "90s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(fmt_duration(Duration::from_micros(10)), "1ms");
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
        for d in ["2h", "10m", "90s", "1500ms", "0s", FOREVER] {
            assert!(crate::config::parse_duration(d).is_ok(), "{d}");
        }
    }

    #[test]
    fn booleans_and_lists() {
        assert_eq!(boolean("On"), Some(true));
        assert_eq!(boolean("0"), Some(false));
        assert_eq!(boolean("maybe"), None);
        assert_eq!(list(" a, b ,,c ", ','), ["a", "b", "c"]);
    }
}
