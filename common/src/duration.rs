//! The one way durations are written, by every flag, environment variable and file of
//! image-mirror: a whole number and a unit, `ms`, `s`, `m`, `h` or `d` (`500ms`, `90s`, `15m`,
//! `6h`, `1d`), or a whole number alone, read as seconds (`30`).

use std::time::Duration;

/// Reads a duration; the error says what was wrong with `text`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad =
        || format!("{text:?}: expected a whole number and a unit (ms, s, m, h or d), such as 15m");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(bad()),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: too long"))
}

/// Reads a duration that must be more than zero.
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_unit_and_plain_seconds() {
        for (text, millis) in [
            ("500ms", 500),
            ("90s", 90_000),
            ("90", 90_000),
            (" 15m ", 900_000),
            ("6h", 21_600_000),
            ("1d", 86_400_000),
            ("0s", 0),
        ] {
            assert_eq!(
                parse(text).unwrap(),
                Duration::from_millis(millis),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_ones_are_named() {
        for bad in ["", "s", "10x", "1.5h", "-1s", "99999999999999999999d"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(parse_positive("0").unwrap_err().contains("more than zero"));
        assert_eq!(parse_positive("2m").unwrap(), Duration::from_secs(120));
    }
}
