//! Durations as config writes them: a whole number and a unit, `"500ms"`,
//! `"10s"`, `"1m"`, `"6h"`.

use std::time::Duration;

/// Parses `"<whole number><unit>"` with the unit `ms`, `s`, `m` or `h`.
///
/// The error is a message for the operator, with an example.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = || {
        format!(
            "invalid duration {text:?}: expected a whole number and a unit (ms, s, m or h), e.g. \"500ms\", \"10s\", \"1m\" or \"6h\""
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(hint());
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(hint()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn anything_else_is_an_error_with_an_example() {
        for bad in [
            "", "10", "s", "1.5s", "-1s", "10 s", " 10s", "10S", "1d", "10sec", "1h30m", "+5s",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("e.g. \"500ms\""), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn overflow_is_an_error() {
        let err = parse_duration("99999999999999999999h").expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
        assert!(parse_duration("18446744073709551615h").is_err());
    }
}
