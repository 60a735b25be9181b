//! Signal names and numbers as `kill` accepts them (`TERM`, `SIGTERM`, `15`).

use nix::sys::signal::Signal;
use std::str::FromStr;

/// Parses a signal given by name (with or without `SIG`) or number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(format!("invalid signal number `{s}`"))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        return realtime(libc::SIGRTMIN(), rt, s);
    }
    if let Some(rt) = name.strip_prefix("SIGRTMAX") {
        return realtime(libc::SIGRTMAX(), rt, s);
    }
    Signal::from_str(&name)
        .map(|sig| sig as i32)
        .map_err(|_| format!("unknown signal `{s}`"))
}

fn realtime(base: i32, offset: &str, orig: &str) -> Result<i32, String> {
    let off: i32 = if offset.is_empty() {
        0
    } else {
        offset
            .parse()
            .map_err(|_| format!("unknown signal `{orig}`"))?
    };
    let n = base + off;
    if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) {
        Ok(n)
    } else {
        Err(format!("unknown signal `{orig}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("term"), Ok(15));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("RTMIN+1"), Ok(libc::SIGRTMIN() + 1));
        assert!(parse_signal("NOPE").unwrap_err().contains("`NOPE`"));
        assert!(parse_signal("0").is_err());
    }
}
