//! Leaf values of the config file: strings with `${VAR}` interpolation, durations,
//! sizes, rates and secrets.
//!
//! Interpolation happens while each scalar is deserialized, not on the file's
//! text: a substituted value can never change the YAML's structure, and
//! serde_yaml's errors keep the line and column of the key. Error messages quote
//! the text as written in the file (`${VAR}`), never what it expanded to.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Replaces `${VAR}` and `${VAR:-default}` with values from the environment.
/// `$${` is a literal `${`. An unset variable without a default is an error
/// naming it (and only it).
pub fn interpolate(raw: &str) -> Result<String, String> {
    interpolate_with(raw, |name| std::env::var(name).ok())
}

/// [`interpolate`] with an injectable environment.
pub fn interpolate_with(raw: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if !raw.contains('$') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            // Errors never quote the text: it may be a secret.
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated `${` (no closing `}`)".to_owned())?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(
                    "invalid variable name in `${…}` (expected letters, digits and _)".to_owned(),
                );
            }
            match (env(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!("environment variable {name} is not set"));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Accepts a YAML string (interpolated) or, for convenience, a number or bool
/// written bare, and hands the resulting text to `parse`.
fn scalar<'de, D, T>(
    de: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, String>,
    }
    impl<T> V<T> {
        fn run<E: de::Error>(&self, text: &str) -> Result<T, E> {
            let expanded = interpolate(text).map_err(E::custom)?;
            (self.parse)(&expanded).map_err(E::custom)
        }
    }
    impl<T> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            self.run(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.run(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.run(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            self.run(&v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
            self.run(if v { "true" } else { "false" })
        }
    }
    de.deserialize_any(V { expecting, parse })
}

macro_rules! scalar_type {
    ($ty:ty, $expecting:literal, $parse:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                scalar(de, $expecting, $parse)
            }
        }
    };
}

/// A string from the config file, after `${VAR}` interpolation.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(pub String);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(s.to_owned())
    }
}

scalar_type!(Text, "a string", |s| Ok(Text(s.to_owned())));

/// A secret from the config file (a JWT secret, a Redis URL with its
/// password): `Debug` prints `***`, it is never part of an error message,
/// and it compares in constant time.
#[derive(Clone, Eq)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret's value, for the code that uses it as a key.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        // The value is never quoted back: a secret must not reach an error.
        struct V;
        impl Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                interpolate(v).map(Secret).map_err(E::custom)
            }
        }
        de.deserialize_str(V)
    }
}

/// A non-negative integer; `${VAR}` allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Num(pub u64);

scalar_type!(Num, "a non-negative integer", |s| s
    .trim()
    .parse::<u64>()
    .map(Num)
    .map_err(|_| format!("expected a non-negative integer, got {s:?}")));

/// `true`/`false`; `${VAR}` allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

scalar_type!(Flag, "true or false", |s| match s.trim() {
    "true" => Ok(Flag(true)),
    "false" => Ok(Flag(false)),
    other => Err(format!("expected true or false, got {other:?}")),
});

/// A duration written `500ms`, `30s`, `15m`, `12h` or `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let bad = || {
        format!(
            "invalid duration {s:?}: expected a number and a unit, e.g. 500ms, 30s, 15m, 12h, 7d"
        )
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

scalar_type!(Dur, "a duration such as 30s", |s| parse_duration(s)
    .map(Dur));

/// A size in bytes: `512`, `64KiB`, `10MiB`, `1GiB` (also `KB`/`MB`/`GB`, powers of 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let bad = || format!("invalid size {s:?}: expected e.g. 512, 64KiB, 10MiB, 1GiB");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

scalar_type!(Size, "a size such as 10MiB", |s| parse_size(s).map(Size));

/// A rate written `N/s`, `N/min` or `N/h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per `per`.
    pub count: u32,
    pub per: Duration,
}

pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("invalid rate {s:?}: expected N/s, N/min or N/h");
    let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("invalid rate {s:?}: the count must be at least 1"));
    }
    let per = match unit.trim() {
        "s" | "sec" => Duration::from_secs(1),
        "min" | "m" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok(Rate { count, per })
}

scalar_type!(Rate, "a rate such as 100/s", parse_rate);

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_owned())
    }

    #[test]
    fn interpolation_replaces_set_variables_and_defaults() {
        assert_eq!(interpolate_with("a ${SET} b", env).unwrap(), "a value b");
        assert_eq!(interpolate_with("${UNSET:-dflt}", env).unwrap(), "dflt");
        assert_eq!(interpolate_with("${SET:-dflt}", env).unwrap(), "value");
        assert_eq!(interpolate_with("${UNSET:-}", env).unwrap(), "");
        assert_eq!(
            interpolate_with("$${SET} $2b$", env).unwrap(),
            "${SET} $2b$"
        );
    }

    #[test]
    fn malformed_interpolation_errors_never_quote_the_text() {
        let err = interpolate_with("SECRET-VALUE${oops", env).unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
        let err = interpolate_with("SECRET-VALUE${bad name}", env).unwrap_err();
        assert!(
            !err.contains("SECRET") && !err.contains("bad name"),
            "{err}"
        );
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let err = interpolate_with("x${NOPE}", env).unwrap_err();
        assert_eq!(err, "environment variable NOPE is not set");
    }

    #[test]
    fn durations_sizes_and_rates_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("10 parsecs").is_err());
        let rate = parse_rate("20/min").unwrap();
        assert_eq!((rate.count, rate.per), (20, Duration::from_secs(60)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5").is_err());
    }

    #[test]
    fn secret_debug_hides_the_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "***");
    }

    #[test]
    fn secrets_compare_by_value() {
        let secret = |s: &str| Secret::new(s.to_owned());
        assert_eq!(secret("hunter2"), secret("hunter2"));
        assert_ne!(secret("hunter2"), secret("hunter3"));
        assert_ne!(secret("hunter2"), secret("hunter"));
    }
}
