//! Durations, sizes and counts as written in `skep.toml` and workflow files,
//! each with its bound: a value past it is an error at load, never a silent
//! wrap-around later.

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, de};

/// The longest duration any key accepts: 30 days. Longer is almost surely a typo,
/// and it keeps every deadline and every reported millisecond count exact.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The largest size any key accepts: 1 TiB (past it, sizes saturate in parsing).
pub const MAX_SIZE: u64 = 1 << 40;

pub(super) const DURATION: &str = r#"a duration such as "250ms", "30s", "1.5m" or "1h""#;
pub(super) const SIZE: &str = r#"a size such as "512KiB", "64MiB" or "1GiB""#;
const COUNT: &str = "a non-negative integer";

/// Parses a duration above zero and at most [`MAX_DURATION`]: "250ms", "30s", "1.5s", "5m", "1h 30m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Err(e) => Err(format!("expected {DURATION}, found {text:?} ({e})")),
        Ok(d) if d.is_zero() => Err(format!("expected a duration above zero, found {text:?}")),
        Ok(d) if d > MAX_DURATION => Err(format!("expected a duration of at most 30 days (\"720h\"), found {text:?}")),
        Ok(d) => Ok(d),
    }
}

/// Parses a size of at most [`MAX_SIZE`]: "512", "512B", "64KiB", "1.5MiB", "1GiB", "10KB".
pub fn parse_size(text: &str) -> Result<u64, String> {
    match text.parse::<bytesize::ByteSize>() {
        Err(e) => Err(format!("expected {SIZE}, found {text:?} ({e})")),
        Ok(size) if size.as_u64() > MAX_SIZE => Err(format!("expected a size of at most 1TiB, found {text:?}")),
        Ok(size) => Ok(size.as_u64()),
    }
}

// The wrappers below parse during deserialization, so the error carries the key path and
// `timeout = 30` gets the same "expected a duration" as `timeout = "30"`.

/// A value a config writes as a string (`"30s"`, `"64MiB"`), parsed and
/// checked by `parse`; `EXPECTING` is what a type error says was expected.
pub(super) trait FromText: Sized {
    const EXPECTING: &'static str;
    fn parse(text: &str) -> Result<Self, String>;
}

impl FromText for Duration {
    const EXPECTING: &'static str = DURATION;
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
}

/// A size in bytes.
impl FromText for u64 {
    const EXPECTING: &'static str = SIZE;
    fn parse(text: &str) -> Result<Self, String> {
        parse_size(text)
    }
}

/// A duration, or `"never"`.
impl FromText for Option<Duration> {
    const EXPECTING: &'static str = "a duration such as \"30m\", or \"never\"";
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "never" => Ok(None),
            text => parse_duration(text).map(Some).map_err(|e| format!("{e}, or \"never\"")),
        }
    }
}

/// A config value read from its text form by [`FromText`].
pub(super) struct Text<T>(pub T);

impl<'de, T: FromText> Deserialize<'de> for Text<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<T: FromText> de::Visitor<'_> for Visitor<T> {
            type Value = Text<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<T>, E> {
                T::parse(text).map(Text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

/// A duration checked by [`parse_duration`].
pub(super) type Dur = Text<Duration>;
/// A duration or `"never"`.
pub(super) type DurOrNever = Text<Option<Duration>>;
/// A size checked by [`parse_size`].
pub(super) type Size = Text<u64>;

/// A non-negative integer; its own type so the message says so rather than "u64".
pub(super) struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(COUNT)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                Ok(Count(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                u64::try_from(n).map(Count).map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
            }
        }
        deserializer.deserialize_u64(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_durations_parse_exactly() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("250ms", ms(250)),
            ("30s", ms(30_000)),
            ("1.5s", ms(1500)),
            ("0.1s", ms(100)),
            ("5m", ms(300_000)),
            ("1.5m", ms(90_000)),
            ("1h", ms(3_600_000)),
            ("1.25h", ms(4_500_000)),
            ("1h 30m", ms(5_400_000)),
            ("720h", MAX_DURATION),
            ("30days", MAX_DURATION),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn malformed_zero_and_huge_durations_are_refused_with_the_reason() {
        for text in ["30", "-1s", "+1s", "", "s", ".5s", "1.s", "1.2.3s", "1S", "99999999999999999999999h"] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.starts_with(&format!("expected {DURATION}, found {text:?} (")), "{err}");
        }
        assert_eq!(parse_duration("0s"), Err(r#"expected a duration above zero, found "0s""#.to_owned()));
        for text in ["18446744073709551.716s", "721h", "31days", "30days 1ns"] {
            let err = parse_duration(text).expect_err(text);
            assert_eq!(err, format!("expected a duration of at most 30 days (\"720h\"), found {text:?}"));
        }
    }

    #[test]
    fn sizes_parse_exactly_and_are_bounded() {
        for (text, expected) in
            [("512", 512), ("512B", 512), ("64KiB", 64 << 10), ("64MiB", 64 << 20), ("1GiB", 1 << 30), ("10KB", 10_000)]
        {
            assert_eq!(parse_size(text), Ok(expected), "{text:?}");
        }
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("1TiB"), Ok(MAX_SIZE));
        for text in ["", "64 megs", "-1"] {
            assert!(parse_size(text).expect_err(text).starts_with(&format!("expected {SIZE}, found {text:?}")));
        }
        assert_eq!(parse_size("2TiB"), Err("expected a size of at most 1TiB, found \"2TiB\"".to_owned()));
        assert!(parse_size("20000000000GiB").is_err(), "saturating sizes must not pass as the maximum");
    }
}
