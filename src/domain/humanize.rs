//! The `*_humanized` strings of a dbt Cloud run: `"1 minute, 5 seconds"`, `"3 days ago"`.

const UNITS: [(i64, &str); 5] = [(7 * 86_400, "week"), (86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second")];

/// A duration in whole seconds as its two largest non-zero units: `46 seconds`,
/// `1 minute, 5 seconds`, `2 hours, 1 minute`, `0 seconds`.
pub fn duration(seconds: i64) -> String {
    let mut rest = seconds.max(0);
    let mut parts = Vec::with_capacity(2);
    for (size, unit) in UNITS {
        let count = rest / size;
        rest %= size;
        if count > 0 {
            parts.push(format!("{count} {unit}{}", if count == 1 { "" } else { "s" }));
            if parts.len() == 2 {
                break;
            }
        } else if !parts.is_empty() {
            // Only adjacent units read well ("1 hour, 5 seconds" does not).
            break;
        }
    }
    if parts.is_empty() { "0 seconds".to_owned() } else { parts.join(", ") }
}

/// How long ago something happened: `just now`, `5 minutes ago`, `2 weeks, 3 days ago`.
pub fn ago(seconds: i64) -> String {
    if seconds < 1 { "just now".to_owned() } else { format!("{} ago", duration(seconds)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_dbt_cloud() {
        assert_eq!(duration(0), "0 seconds");
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(46), "46 seconds");
        assert_eq!(duration(65), "1 minute, 5 seconds");
        assert_eq!(duration(3_600), "1 hour");
        assert_eq!(duration(3_605), "1 hour");
        assert_eq!(duration(7_260), "2 hours, 1 minute");
        assert_eq!(duration(17 * 86_400 + 30), "2 weeks, 3 days");
        assert_eq!(duration(-5), "0 seconds");
    }

    #[test]
    fn ago_reads_like_dbt_cloud() {
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(120), "2 minutes ago");
    }
}
