//! Transfer rates as flags write them (`--max-bandwidth`): a positive number and a unit of
//! bytes per second, `B/s`, `KB/s`, `KiB/s`, `MB/s`, `MiB/s`, `GB/s` or `GiB/s` (`40MiB/s`,
//! `2.5MB/s`; the `/s` may be left out), for every transfer or, as `HOST=RATE`, for one
//! registry host (what is read from it and written to it).

use std::fmt;

/// Bytes per second, more than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate {
    bytes_per_second: u64,
}

impl Rate {
    /// A rate of `bytes_per_second` (at least 1).
    pub fn per_second(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1),
        }
    }

    /// Bytes per second.
    pub fn bytes_per_second(self) -> u64 {
        self.bytes_per_second
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bytes_per_second as f64;
        if b >= 1024.0 * 1024.0 {
            write!(f, "{:.1} MiB/s", b / (1024.0 * 1024.0))
        } else if b >= 1024.0 {
            write!(f, "{:.1} KiB/s", b / 1024.0)
        } else {
            write!(f, "{b} B/s")
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let bad = |why: &str| format!("{text:?}: {why}; write a rate such as 40MiB/s");
        let n: f64 = number.parse().map_err(|_| bad("not a number and a unit"))?;
        if !n.is_finite() || n <= 0.0 {
            return Err(bad("a rate must be more than zero"));
        }
        let unit = unit.trim();
        let unit = unit.strip_suffix("/s").unwrap_or(unit);
        let scale: f64 = match unit {
            "B" => 1.0,
            "KB" | "kB" => 1e3,
            "KiB" => 1024.0,
            "MB" => 1e6,
            "MiB" => 1024.0 * 1024.0,
            "GB" => 1e9,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            "" => return Err(bad("no unit")),
            other => {
                return Err(bad(&format!(
                    "unknown unit {other:?} (B/s, KB/s, KiB/s, MB/s, MiB/s, GB/s, GiB/s)"
                )))
            }
        };
        let bytes = n * scale;
        if bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(bad("out of range"));
        }
        Ok(Self::per_second(bytes as u64))
    }
}

/// A cap for every transfer (`host` none) or one registry host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRate {
    pub host: Option<String>,
    pub rate: Rate,
}

impl std::str::FromStr for HostRate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((host, rate)) => {
                let host = host.trim();
                if host.is_empty() {
                    return Err(format!("{text:?}: no host before '='"));
                }
                Ok(Self {
                    host: Some(host.to_owned()),
                    rate: rate.parse()?,
                })
            }
            None => Ok(Self {
                host: None,
                rate: text.parse()?,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_written() {
        let r = |s: &str| s.parse::<Rate>().map(Rate::bytes_per_second);
        assert_eq!(r("40MiB/s"), Ok(40 * 1024 * 1024));
        assert_eq!(r("40MiB"), Ok(40 * 1024 * 1024));
        assert_eq!(r("2.5MB/s"), Ok(2_500_000));
        assert_eq!(r("512KiB/s"), Ok(512 * 1024));
        assert_eq!(r("100B/s"), Ok(100));
        assert_eq!(r("1GiB/s"), Ok(1 << 30));
        for bad in [
            "0",
            "0MiB/s",
            "-5MiB/s",
            "fast",
            "10",
            "10 furlongs/s",
            "10Mib/s",
            "",
            "NaNMiB/s",
        ] {
            let e = r(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert!(r("10 furlongs/s").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn a_host_rate_names_its_host() {
        let h: HostRate = "ghcr.io=4MiB/s".parse().unwrap();
        assert_eq!(h.host.as_deref(), Some("ghcr.io"));
        assert_eq!(h.rate.bytes_per_second(), 4 << 20);
        let all: HostRate = "20MiB/s".parse().unwrap();
        assert_eq!(all.host, None);
        assert!("=4MiB/s".parse::<HostRate>().is_err());
        assert!("ghcr.io=0".parse::<HostRate>().is_err());
    }
}
