//! Durations as people write them, one grammar for berth.yaml, the CLI's flags and the
//! `berth.dev/timeout` annotation: jiff's friendly format — `500ms`, `30s`, `5m`, `1h30m`,
//! `2h 5m`, `1.5h`, also Go's `5m0s` as helm and kubectl print it. A bare number is refused
//! (seconds or minutes? say which), and so are zero and negative durations.
//!
//! Dockerfile `HEALTHCHECK` flags keep Go's own syntax (berth-build), as Docker reads them.

use std::time::Duration;

/// Parses `text`; the error says what is wrong and how to write it.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty; write e.g. 90s, 5m or 1h30m".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` has no unit; write {s}s or {s}m"));
    }
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 90s, 5m or 1h30m"))?;
    if d.is_negative() || d.is_zero() {
        return Err("must be more than zero".into());
    }
    Duration::try_from(d).map_err(|e| format!("`{s}`: {e}"))
}

/// `5m`, `90s` -> `1m30s`, `1h`, `2h5m`: as berth.yaml writes durations, to the nearest
/// second (a wait given what is left of a 25 s deadline says `25s`, not `24s`).
pub fn human(d: Duration) -> String {
    let s = (d.as_millis() as u64 + 500) / 1000;
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_people_write() {
        let s = Duration::from_secs;
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(s(30)));
        assert_eq!(parse("5m"), Ok(s(300)));
        assert_eq!(parse("1h30m"), Ok(s(5400)));
        assert_eq!(parse("1m30s"), Ok(s(90)));
        assert_eq!(parse("2h 5m"), Ok(s(7500)));
        assert_eq!(parse(" 5m0s "), Ok(s(300)));
        assert_eq!(parse("1.5h"), Ok(s(5400)));
    }

    #[test]
    fn bare_numbers_unknown_units_zero_and_negative_are_refused() {
        assert_eq!(
            parse("300"),
            Err("`300` has no unit; write 300s or 300m".into())
        );
        assert!(parse("5x").unwrap_err().contains("is not a duration"));
        assert_eq!(parse("0s"), Err("must be more than zero".into()));
        assert_eq!(parse("-5s"), Err("must be more than zero".into()));
        assert!(parse("m").unwrap_err().contains("is not a duration"));
        assert!(parse("").unwrap_err().starts_with("empty"));
    }
}
