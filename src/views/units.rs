//! How views write quantities: durations, token counts, costs and timestamps, the same way in
//! every view. Pure formatting; nothing here reads a clock.

/// `0ms`, `850ms`, `12.3s`, `4m05s`, `1h02m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// `289,700`.
pub fn tokens(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 effect`, `9 effects`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `$1.1960`: four decimals, because single leaves often cost fractions of a cent.
pub fn cost(usd: f64) -> String {
    format!("${usd:.4}")
}

/// Cost rounded for JSON output, so float noise never reaches a diff.
pub fn cost_json(usd: f64) -> f64 {
    (usd * 10_000.0).round() / 10_000.0
}

/// `2026-11-21T08:00:53.977Z` as `2026-11-21 08:00:53` (UTC); other text unchanged.
pub fn timestamp(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(12_340), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(tokens(289_700), "289,700");
        assert_eq!(tokens(1_000_000), "1,000,000");
        assert_eq!(tokens(12), "12");
        assert_eq!(count(1, "effect"), "1 effect");
        assert_eq!(count(0, "session"), "0 sessions");
        assert_eq!(cost(1.196), "$1.1960");
        assert_eq!(timestamp("2026-11-21T08:00:53.977Z"), "2026-11-21 08:00:53");
    }
}
