//! Instants, durations, dates and the calendar questions rules ask.
//!
//! Plugins never read a clock: the host passes `now`. Every calendar question ("today", "this
//! week", quiet hours) is asked in a [`Zone`], normally the customer's, and is correct across
//! daylight-saving changes because the zone rules come from the IANA database bundled into the
//! plugin (via `jiff`).
//!
//! Windows are **half-open**: "within the last 30 days" is `(now − 30d, now]`.

use core::fmt;
use core::ops::{Add, Sub};
use core::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use jiff::Span;
pub use jiff::civil::{Date as CivilDate, Time as CivilTime};

/// A time value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(pub String);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimeError {}

/// An instant: milliseconds since 1970-01-01T00:00:00Z.
///
/// In JSON it is an RFC 3339 timestamp with an offset (`2025-03-11T12:00:00Z`,
/// `2025-03-10T21:00:00-03:00`); precision below a millisecond is dropped.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// The instant `s` seconds after the Unix epoch.
    pub const fn from_seconds(s: i64) -> Self {
        Timestamp(s * 1000)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Reads an RFC 3339 timestamp; the offset is required.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let ts: jiff::Timestamp = text.parse().map_err(|e| {
            TimeError(format!(
                "`{text}` is not an RFC 3339 timestamp with an offset ({e})"
            ))
        })?;
        Ok(Timestamp(ts.as_millisecond()))
    }

    /// This instant as a `jiff` timestamp, for calendar arithmetic.
    pub fn to_jiff(self) -> jiff::Timestamp {
        // Every i64 millisecond value we create comes from a valid jiff timestamp or from
        // arithmetic on one; out-of-range values saturate to jiff's bounds.
        jiff::Timestamp::from_millisecond(self.0).unwrap_or(if self.0 < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        })
    }

    /// The instant from a `jiff` timestamp.
    pub fn from_jiff(ts: jiff::Timestamp) -> Self {
        Timestamp(ts.as_millisecond())
    }

    /// This instant on the wall clock of `zone`.
    pub fn in_zone(self, zone: &Zone) -> jiff::Zoned {
        self.to_jiff().to_zoned(zone.0.clone())
    }

    /// The calendar date of this instant in `zone`.
    pub fn local_date(self, zone: &Zone) -> CivilDate {
        zone.0.to_datetime(self.to_jiff()).date()
    }

    /// Whether this instant lies in the half-open window `(now − d, now]`.
    pub fn within_last(self, d: Duration, now: Timestamp) -> bool {
        self > now - d && self <= now
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_jiff(), f)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, TimeError> {
        Timestamp::parse(s)
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.0))
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, other: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }
}

// JSON carries RFC 3339 text; the binary ABI carries the i64 millisecond count.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            Timestamp::parse(&text).map_err(D::Error::custom)
        } else {
            i64::deserialize(d).map(Timestamp)
        }
    }
}

/// A span of time in milliseconds. Written in JSON as a string such as `"24h"`, `"30d"`,
/// `"90m"`, `"45s"` or a sum of those (`"1h30m"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(i64);

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);
    /// `n` milliseconds.
    pub const fn millis(n: i64) -> Self {
        Duration(n)
    }
    /// `n` seconds.
    pub const fn seconds(n: i64) -> Self {
        Duration(n * 1000)
    }
    /// `n` minutes.
    pub const fn minutes(n: i64) -> Self {
        Duration(n * 60_000)
    }
    /// `n` hours.
    pub const fn hours(n: i64) -> Self {
        Duration(n * 3_600_000)
    }
    /// `n` days of exactly 24 hours (for calendar days, see [`Window::CalendarDays`]).
    pub const fn days(n: i64) -> Self {
        Duration(n * 86_400_000)
    }
    /// The length in milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    /// Whole days (rounded down) in this span.
    pub const fn whole_days(self) -> i64 {
        self.0.div_euclid(86_400_000)
    }

    /// Reads `"24h"`, `"30d"`, `"1h30m"`, `"45s"`, `"500ms"`.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        let bad = || {
            TimeError(format!(
                "`{text}` is not a duration such as \"24h\", \"30d\", \"90m\" or \"1h30m\""
            ))
        };
        let mut total: i64 = 0;
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, len) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms != 0 && ms % len == 0 {
                return write!(f, "{}{unit}", ms / len);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({self})")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    /// JSON: text such as `"24h"`, or a whole number of seconds.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return i64::deserialize(d).map(Duration);
        }
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"24h\" or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                Duration::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
                i64::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_mul(1000))
                    .map(Duration)
                    .ok_or_else(|| E::custom("duration too long"))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
                if n < 0 {
                    return Err(E::custom("a duration cannot be negative"));
                }
                self.visit_u64(n as u64)
            }
        }
        d.deserialize_any(V)
    }
}

/// A calendar date without a time or zone (`YYYY-MM-DD`), such as a birthday.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub CivilDate);

impl Date {
    /// Reads `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        if text.len() != 10 {
            return Err(TimeError(format!("`{text}` is not a date YYYY-MM-DD")));
        }
        text.parse::<CivilDate>()
            .map(Date)
            .map_err(|e| TimeError(format!("`{text}` is not a date YYYY-MM-DD ({e})")))
    }

    /// Whether this date, taken as a birthday, falls on `today`. Someone born on 29 February
    /// celebrates on 28 February in years that are not leap years.
    pub fn is_anniversary_on(self, today: CivilDate) -> bool {
        let (m, d) = (self.0.month(), self.0.day());
        if (m, d) == (today.month(), today.day()) {
            return true;
        }
        m == 2 && d == 29 && !today.in_leap_year() && today.month() == 2 && today.day() == 28
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            (self.0.year(), self.0.month(), self.0.day()).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            Date::parse(&text).map_err(D::Error::custom)
        } else {
            let (y, m, day) = <(i16, i8, i8)>::deserialize(d)?;
            CivilDate::new(y, m, day)
                .map(Date)
                .map_err(D::Error::custom)
        }
    }
}

/// An IANA time zone, with its daylight-saving rules.
#[derive(Clone, PartialEq)]
pub struct Zone(pub jiff::tz::TimeZone);

impl Zone {
    /// Looks up an IANA zone name such as `America/Sao_Paulo`.
    pub fn get(name: &str) -> Result<Zone, TimeError> {
        jiff::tz::db()
            .get(name)
            .map(Zone)
            .map_err(|_| TimeError(format!("`{name}` is not an IANA time zone name")))
    }

    /// UTC.
    pub fn utc() -> Zone {
        Zone(jiff::tz::TimeZone::UTC)
    }

    /// The IANA name of this zone, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.0.iana_name()
    }

    /// The first instant of `date` in this zone (midnight, or the first instant after a
    /// daylight-saving gap that skips midnight).
    pub fn start_of_day(&self, date: CivilDate) -> Timestamp {
        match date.to_zoned(self.0.clone()).and_then(|z| z.start_of_day()) {
            Ok(z) => Timestamp::from_jiff(z.timestamp()),
            Err(_) => Timestamp::from_jiff(jiff::Timestamp::MAX),
        }
    }

    /// The instant at which the wall clock of this zone shows `time` on `date`. A wall time that
    /// a daylight-saving gap skips resolves to the instant just after the gap; one that a fold
    /// repeats resolves to its first occurrence.
    pub fn at(&self, date: CivilDate, time: CivilTime) -> Timestamp {
        match date.to_datetime(time).to_zoned(self.0.clone()) {
            Ok(z) => Timestamp::from_jiff(z.timestamp()),
            Err(_) => Timestamp::from_jiff(jiff::Timestamp::MAX),
        }
    }

    /// The first instant strictly after `now` at which the wall clock shows `time`.
    pub fn next_wall_time(&self, now: Timestamp, time: CivilTime) -> Timestamp {
        let mut date = now.local_date(self);
        // Two steps always suffice for ordinary zones; a few more cover days a zone skipped
        // entirely (date-line moves).
        for _ in 0..4 {
            let at = self.at(date, time);
            if at > now {
                return at;
            }
            date = date.tomorrow().unwrap_or(date);
        }
        self.at(date, time)
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name().unwrap_or("fixed"))
    }
}

/// A counting window for frequency caps and "how many in the last …" questions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// `(now − d, now]`.
    Rolling(Duration),
    /// Today and the previous `n − 1` days in the customer's zone: from the local midnight that
    /// starts the first of those days up to and including `now`.
    CalendarDays(u32),
}

impl Window {
    /// The first instant that belongs to the window: instants `t` with
    /// `start_inclusive <= t <= now` are in it.
    pub fn start(self, now: Timestamp, zone: &Zone) -> Timestamp {
        match self {
            Window::Rolling(d) => now - d + Duration::millis(1),
            Window::CalendarDays(n) => {
                let today = now.local_date(zone);
                let back = i64::from(n.max(1)) - 1;
                let first = today
                    .checked_sub(jiff::Span::new().days(back))
                    .unwrap_or(today);
                zone.start_of_day(first)
            }
        }
    }

    /// Whether `t` falls in the window ending at `now`.
    pub fn contains(self, t: Timestamp, now: Timestamp, zone: &Zone) -> bool {
        t <= now && t >= self.start(now, zone)
    }
}

/// A daily local-time window `[start, end)`; when `start` is after `end` it crosses midnight
/// (22:00–08:00). Equal bounds make an empty window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Local time the window opens (inclusive).
    pub start: CivilTime,
    /// Local time the window closes (exclusive).
    pub end: CivilTime,
}

impl QuietHours {
    /// Reads `"HH:MM"` bounds.
    pub fn parse(start: &str, end: &str) -> Result<Self, TimeError> {
        Ok(QuietHours {
            start: parse_wall_time(start)?,
            end: parse_wall_time(end)?,
        })
    }

    /// If `now` is inside the window in `zone`, the instant the window ends (the next local
    /// `end`); otherwise `None`.
    pub fn until(&self, now: Timestamp, zone: &Zone) -> Option<Timestamp> {
        let local = zone.0.to_datetime(now.to_jiff()).time();
        let inside = if self.start < self.end {
            local >= self.start && local < self.end
        } else if self.start > self.end {
            local >= self.start || local < self.end
        } else {
            false
        };
        inside.then(|| zone.next_wall_time(now, self.end))
    }
}

/// Reads a wall-clock time `"HH:MM"` or `"HH:MM:SS"`.
pub fn parse_wall_time(text: &str) -> Result<CivilTime, TimeError> {
    text.parse::<CivilTime>()
        .map_err(|_| TimeError(format!("`{text}` is not a local time HH:MM")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn timestamps_round_trip_through_json_and_binary() {
        let t = ts("2025-03-10T21:00:00-03:00");
        assert_eq!(t, ts("2025-03-11T00:00:00Z"));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2025-03-11T00:00:00Z\"");
        let bin = postcard::to_allocvec(&t).unwrap();
        assert_eq!(postcard::from_bytes::<Timestamp>(&bin).unwrap(), t);
    }

    #[test]
    fn timestamps_without_offset_are_refused() {
        let err = Timestamp::parse("2025-03-11T12:00:00").unwrap_err();
        assert!(err.0.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(Duration::parse("24h").unwrap(), Duration::hours(24));
        assert_eq!(Duration::parse("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(Duration::parse("30d").unwrap().to_string(), "30d");
        assert!(Duration::parse("24").is_err());
        assert!(Duration::parse("h").is_err());
        assert!(Duration::parse("3 fortnights").is_err());
    }

    #[test]
    fn within_last_is_half_open() {
        let now = ts("2025-03-31T00:00:00Z");
        let d = Duration::days(30);
        assert!(!ts("2025-03-01T00:00:00Z").within_last(d, now));
        assert!(ts("2025-03-01T00:00:01Z").within_last(d, now));
        assert!(now.within_last(d, now));
        assert!(!ts("2025-03-31T00:00:01Z").within_last(d, now));
    }

    #[test]
    fn calendar_window_starts_at_local_midnight() {
        let sp = Zone::get("America/Sao_Paulo").unwrap();
        let now = ts("2025-03-11T03:30:00Z"); // 00:30 local on the 11th
        let w = Window::CalendarDays(1);
        assert_eq!(w.start(now, &sp), ts("2025-03-11T03:00:00Z"));
        assert!(!w.contains(ts("2025-03-11T02:30:00Z"), now, &sp));
        assert_eq!(
            Window::CalendarDays(2).start(now, &sp),
            ts("2025-03-10T03:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_cross_midnight() {
        let sp = Zone::get("America/Sao_Paulo").unwrap();
        let q = QuietHours::parse("22:00", "08:00").unwrap();
        assert_eq!(
            q.until(ts("2025-03-11T01:30:00Z"), &sp),
            Some(ts("2025-03-11T11:00:00Z"))
        );
        assert_eq!(
            q.until(ts("2025-03-11T09:00:00Z"), &sp), // 06:00 local
            Some(ts("2025-03-11T11:00:00Z"))
        );
        assert_eq!(q.until(ts("2025-03-11T11:00:00Z"), &sp), None); // 08:00 local: open
        assert_eq!(q.until(ts("2025-03-11T00:59:59Z"), &sp), None); // 21:59:59 local
    }

    #[test]
    fn quiet_hours_end_is_correct_across_daylight_saving() {
        // New York springs forward on 2025-03-09 at 02:00 local (UTC−5 → UTC−4).
        let ny = Zone::get("America/New_York").unwrap();
        let q = QuietHours::parse("21:00", "08:00").unwrap();
        let late = ts("2025-03-09T02:30:00Z"); // 21:30 EST on the 8th
        assert_eq!(q.until(late, &ny), Some(ts("2025-03-09T12:00:00Z"))); // 08:00 EDT
    }

    #[test]
    fn leap_day_birthdays_fall_on_28_february_in_common_years() {
        let born = Date::parse("1992-02-29").unwrap();
        let d = |s: &str| s.parse::<CivilDate>().unwrap();
        assert!(born.is_anniversary_on(d("2025-02-28")));
        assert!(!born.is_anniversary_on(d("2025-03-01")));
        assert!(born.is_anniversary_on(d("2024-02-29")));
        assert!(!born.is_anniversary_on(d("2024-02-28")));
        assert!(Date::parse("1992-2-29").is_err());
        assert!(Date::parse("1993-02-29").is_err());
    }
}
