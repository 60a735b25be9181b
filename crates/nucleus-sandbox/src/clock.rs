//! Timestamps for logs and the exit record (the engine's RFC 3339
//! formatter), and "how long ago" for `ps`.

use std::time::Duration;

pub use nucleus_engine::timefmt::{parse_rfc3339, rfc3339};

/// "3 seconds", "5 minutes", "2 hours", "4 days".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0..=1 => return "Less than a second".into(),
        2..=119 => (s, "seconds"),
        120..=7199 => (s / 60, "minutes"),
        7200..=172_799 => (s / 3600, "hours"),
        _ => (s / 86_400, "days"),
    };
    format!("{n} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human(Duration::from_secs(300)), "5 minutes");
    }
}
