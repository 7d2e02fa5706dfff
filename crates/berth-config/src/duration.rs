//! Durations as written in berth.yaml: `500ms`, `30s`, `5m`, `1h`, `1h30m`.

use std::time::Duration;

/// Parses a duration: one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`.
/// A bare number is refused (seconds or minutes? say which), and so is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("number `{}` is too large", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" if rest.starts_with('.') => {
                return Err("write whole numbers with a smaller unit (`90s`, not `1.5m`)".into());
            }
            "" => return Err(format!("`{n}` has no unit")),
            other => return Err(format!("unknown unit `{other}`")),
        };
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn refuses_bare_numbers_unknown_units_and_zero() {
        assert_eq!(parse_duration("300"), Err("`300` has no unit".into()));
        assert_eq!(parse_duration("5x"), Err("unknown unit `x`".into()));
        assert_eq!(parse_duration("0s"), Err("must be more than zero".into()));
        assert_eq!(parse_duration("m"), Err("expected a number at `m`".into()));
        assert!(
            parse_duration("1.5m")
                .unwrap_err()
                .contains("whole numbers")
        );
    }
}
