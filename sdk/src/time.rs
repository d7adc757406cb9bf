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
            let text = crate::text::Text::deserialize(d)?;
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
            let text = crate::text::Text::deserialize(d)?;
            Date::parse(&text).map_err(D::Error::custom)
        } else {
            let (y, m, day) = <(i16, i8, i8)>::deserialize(d)?;
            CivilDate::new(y, m, day)
                .map(Date)
                .map_err(D::Error::custom)
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn lookup(name: &str) -> Option<jiff::tz::TimeZone> {
    jiff::tz::db().get(name).ok()
}

#[cfg(target_arch = "wasm32")]
fn lookup(name: &str) -> Option<jiff::tz::TimeZone> {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    thread_local! {
        /// The zones asked for so far (an instance lives for one call).
        static KNOWN: RefCell<BTreeMap<String, Option<jiff::tz::TimeZone>>> =
            const { RefCell::new(BTreeMap::new()) };
    }
    if let Some(known) = KNOWN.with(|k| k.borrow().get(name).cloned()) {
        return known;
    }
    let zone = crate::guest::zone(name)
        .and_then(|(canonical, tzif)| jiff::tz::TimeZone::tzif(&canonical, &tzif).ok());
    KNOWN.with(|k| k.borrow_mut().insert(name.to_owned(), zone.clone()));
    zone
}

/// An IANA time zone, with its daylight-saving rules.
#[derive(Clone, PartialEq)]
pub struct Zone(pub jiff::tz::TimeZone);

impl Zone {
    /// Looks up an IANA zone name such as `America/Sao_Paulo` (in any case). In a plugin the
    /// host's database answers (`regua.zone`, docs/ABI.md §3), each zone once per call.
    pub fn get(name: &str) -> Result<Zone, TimeError> {
        lookup(name)
            .map(Zone)
            .ok_or_else(|| TimeError(format!("`{name}` is not an IANA time zone name")))
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
    /// a daylight-saving gap skips is read with the offset before the gap (02:30 in a gap from
    /// 02:00 to 03:00 is 03:30 after it); one that a fold repeats resolves to its first
    /// occurrence. For the instant the clock first passes a time, see [`Zone::next_wall_time`].
    pub fn at(&self, date: CivilDate, time: CivilTime) -> Timestamp {
        match date.to_datetime(time).to_zoned(self.0.clone()) {
            Ok(z) => Timestamp::from_jiff(z.timestamp()),
            Err(_) => Timestamp::from_jiff(jiff::Timestamp::MAX),
        }
    }

    /// The next occurrence of the local time `time` after `now`: the first instant strictly
    /// after `now` at which this zone's clock reads `time`, or, on a day when the clock jumps
    /// over `time` (a daylight-saving gap), the instant of the jump, when the clock first passes
    /// it. On a day when the clock reads `time` twice (a fold), whichever occurrence comes next
    /// after `now`. (DOMAIN §3: the earliest instant a deferred message may go.)
    pub fn next_wall_time(&self, now: Timestamp, time: CivilTime) -> Timestamp {
        use jiff::tz::AmbiguousOffset;
        let now_j = now.to_jiff();
        let mut date = now.local_date(self);
        // Two days always suffice for ordinary zones; a few more cover days a zone skipped
        // entirely (date-line moves).
        for _ in 0..4 {
            let wall = date.to_datetime(time);
            let candidates: [Option<jiff::Timestamp>; 2] =
                match self.0.to_ambiguous_timestamp(wall).offset() {
                    AmbiguousOffset::Unambiguous { offset } => {
                        [offset.to_timestamp(wall).ok(), None]
                    }
                    // Skipped: the clock jumps from before `time` to after it at a transition
                    // instant T with T + after > wall >= T + before, so T > wall − after.
                    AmbiguousOffset::Gap { after, .. } => [
                        after.to_timestamp(wall).ok().and_then(|lower| {
                            self.0.following(lower).next().map(|t| t.timestamp())
                        }),
                        None,
                    ],
                    // Repeated: first under the offset before the change, then under the one
                    // after it.
                    AmbiguousOffset::Fold { before, after } => [
                        before.to_timestamp(wall).ok(),
                        after.to_timestamp(wall).ok(),
                    ],
                };
            if let Some(at) = candidates.into_iter().flatten().find(|at| *at > now_j) {
                return Timestamp::from_jiff(at);
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

    /// Whether the local time `local` falls in the window.
    fn contains(&self, local: CivilTime) -> bool {
        if self.start < self.end {
            local >= self.start && local < self.end
        } else if self.start > self.end {
            local >= self.start || local < self.end
        } else {
            false
        }
    }

    /// If `now` is inside the window in `zone`, the instant the window ends: the first instant
    /// after `now` at which the local clock reads a time outside it (DOMAIN §3: the earliest
    /// instant a deferred message may go). That is the next occurrence of `end`
    /// ([`Zone::next_wall_time`]: when a daylight-saving gap skips `end`, the instant of the jump;
    /// when a fold repeats it, the occurrence that comes next), or earlier, a clock change that
    /// lands outside the window. Otherwise `None`.
    pub fn until(&self, now: Timestamp, zone: &Zone) -> Option<Timestamp> {
        let local = |t: jiff::Timestamp| zone.0.to_datetime(t).time();
        if !self.contains(local(now.to_jiff())) {
            return None;
        }
        // Between clock changes the clock runs on, leaving the window only when it reads `end`;
        // a change can also move it out at once. A change can also land inside the window
        // after `end` was passed (a 23-hour window, say): then look again from there.
        let mut from = now;
        for _ in 0..8 {
            let end = zone.next_wall_time(from, self.end);
            let change = zone
                .0
                .following(from.to_jiff())
                .map(|t| t.timestamp())
                .take_while(|t| *t < end.to_jiff())
                .find(|t| !self.contains(local(*t)));
            if let Some(t) = change {
                return Some(Timestamp::from_jiff(t));
            }
            if !self.contains(local(end.to_jiff())) {
                return Some(end);
            }
            from = end;
        }
        Some(zone.next_wall_time(from, self.end))
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
    fn quiet_hours_end_skipped_by_a_gap_is_the_instant_of_the_jump() {
        // New York, 2025-03-09: the clock jumps from 02:00 EST to 03:00 EDT at 07:00Z, passing
        // 02:30 then. At 01:30 EST the quiet window 22:00–02:30 ends at the jump.
        let ny = Zone::get("America/New_York").unwrap();
        let q = QuietHours::parse("22:00", "02:30").unwrap();
        assert_eq!(
            q.until(ts("2025-03-09T06:30:00Z"), &ny),
            Some(ts("2025-03-09T07:00:00Z"))
        );
        // And right after the jump (03:00 EDT) the window is over.
        assert_eq!(q.until(ts("2025-03-09T07:00:00Z"), &ny), None);
        assert_eq!(q.until(ts("2025-03-09T07:10:00Z"), &ny), None);
    }

    #[test]
    fn quiet_hours_end_repeated_by_a_fold_is_the_next_occurrence() {
        // Jerusalem, 2025-10-26: at 23:00Z the clock goes back from 02:00 IDT to 01:00 IST, so
        // 01:30 happens at 22:30Z and again at 23:30Z.
        let jlm = Zone::get("Asia/Jerusalem").unwrap();
        let q = QuietHours::parse("21:00", "01:30").unwrap();
        // 01:28 local, second pass: two minutes to go.
        assert_eq!(
            q.until(ts("2025-10-25T23:28:14Z"), &jlm),
            Some(ts("2025-10-25T23:30:00Z"))
        );
        // 01:28 local, first pass: the first 01:30.
        assert_eq!(
            q.until(ts("2025-10-25T22:28:00Z"), &jlm),
            Some(ts("2025-10-25T22:30:00Z"))
        );
        // 01:10 local in the second pass, after the first 01:30 went by at 22:30Z.
        assert_eq!(
            q.until(ts("2025-10-25T23:10:00Z"), &jlm),
            Some(ts("2025-10-25T23:30:00Z"))
        );
    }

    /// Zones with every kind of change: northern and southern summer time, half-hour and
    /// 45-minute offsets, a 30-minute change (Lord Howe), a two-hour change (Troll), zones that
    /// dropped summer time, and zones without it.
    const ZONES: [&str; 45] = [
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Los_Angeles",
        "America/Anchorage",
        "America/Halifax",
        "America/St_Johns",
        "America/Havana",
        "America/Mexico_City",
        "America/Santiago",
        "America/Asuncion",
        "America/Sao_Paulo",
        "America/Noronha",
        "America/Bogota",
        "America/Godthab",
        "America/Scoresbysund",
        "Atlantic/Azores",
        "Europe/Lisbon",
        "Europe/London",
        "Europe/Dublin",
        "Europe/Paris",
        "Europe/Berlin",
        "Europe/Athens",
        "Europe/Kyiv",
        "Europe/Moscow",
        "Africa/Cairo",
        "Africa/Casablanca",
        "Asia/Jerusalem",
        "Asia/Beirut",
        "Asia/Gaza",
        "Asia/Tehran",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Asia/Tokyo",
        "Australia/Sydney",
        "Australia/Adelaide",
        "Australia/Lord_Howe",
        "Australia/Perth",
        "Pacific/Auckland",
        "Pacific/Chatham",
        "Pacific/Apia",
        "Pacific/Norfolk",
        "Antarctica/Troll",
        "Antarctica/Casey",
        "UTC",
    ];

    /// SplitMix64: a small, seeded, reproducible source of cases.
    struct Cases(u64);
    impl Cases {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The local wall-clock reading at `t`: the tz rules applied forwards (instant to local
    /// time), the one direction the oracle below uses.
    fn wall(zone: &Zone, t: jiff::Timestamp) -> jiff::civil::DateTime {
        zone.0.to_datetime(t)
    }

    /// The next occurrence of `time` after `now`, found by walking the clock forward minute by
    /// minute (every change of 2024–2026 falls on a whole minute): the first instant whose
    /// reading is `time`, or at which the clock jumps from before some day's `time` to after it.
    fn next_by_walking(zone: &Zone, now: jiff::Timestamp, time: CivilTime) -> jiff::Timestamp {
        let minute = 60;
        let mut t =
            jiff::Timestamp::from_second(now.as_second().div_euclid(minute) * minute + minute)
                .unwrap();
        loop {
            let cur = wall(zone, t);
            if cur.time() == time {
                return t;
            }
            // What the clock would read now without a change since a minute ago.
            let expected = wall(zone, t - jiff::SignedDuration::from_mins(1))
                .checked_add(jiff::SignedDuration::from_mins(1))
                .unwrap();
            if cur > expected {
                let mut day = expected.date();
                while day <= cur.date() {
                    let d = day.to_datetime(time);
                    if expected <= d && d < cur {
                        return t;
                    }
                    day = day.tomorrow().unwrap();
                }
            }
            t += jiff::SignedDuration::from_mins(1);
        }
    }

    /// The first instant after `now` outside the quiet window, walking minute by minute.
    fn quiet_end_by_walking(
        zone: &Zone,
        q: &QuietHours,
        now: jiff::Timestamp,
    ) -> Option<jiff::Timestamp> {
        let inside = |t: jiff::Timestamp| {
            let local = wall(zone, t).time();
            if q.start < q.end {
                local >= q.start && local < q.end
            } else {
                local >= q.start || local < q.end
            }
        };
        if q.start == q.end || !inside(now) {
            return None;
        }
        let mut t = jiff::Timestamp::from_second(now.as_second().div_euclid(60) * 60 + 60).unwrap();
        while inside(t) {
            t += jiff::SignedDuration::from_mins(1);
        }
        Some(t)
    }

    /// Many zones, many clock changes of 2024–2026, instants and local times drawn around each
    /// change: the next local time (journey waits of the "next 09:00" kind) and the end of quiet
    /// hours agree with walking the clock forward, which uses only the tz rules' instant-to-local
    /// direction, not the local-to-instant resolution the code under test does.
    #[test]
    fn next_local_times_and_quiet_hours_agree_with_walking_the_clock_around_every_change() {
        let mut cases = Cases(0x5eed_2025);
        let from = jiff::Timestamp::from_second(1_704_067_200).unwrap(); // 2024-01-01T00:00Z
        let to = jiff::Timestamp::from_second(1_798_761_600).unwrap(); // 2027-01-01T00:00Z
        let (mut checked, mut near_changes) = (0, 0);
        for name in ZONES {
            let zone = Zone::get(name).unwrap();
            let changes: Vec<jiff::Timestamp> = zone
                .0
                .following(from)
                .map(|t| t.timestamp())
                .take_while(|t| *t < to)
                .collect();
            // Instants near each change (and a few anywhere, for zones without changes).
            let mut instants: Vec<jiff::Timestamp> = Vec::new();
            for change in &changes {
                for _ in 0..12 {
                    let offset = cases.below(6 * 3600 * 2) as i64 - 6 * 3600;
                    instants.push(*change + jiff::SignedDuration::from_secs(offset));
                }
            }
            for _ in 0..24 {
                let span = (to.as_second() - from.as_second()) as u64;
                instants.push(
                    jiff::Timestamp::from_second(from.as_second() + cases.below(span) as i64)
                        .unwrap(),
                );
            }
            for now in instants {
                // A local time near the clock's readings around the change (so gaps and folds are
                // hit), or anywhere in the day.
                let time = if cases.below(3) > 0 {
                    let near = now + jiff::SignedDuration::from_mins(cases.below(240) as i64 - 120);
                    let t = wall(&zone, near).time();
                    CivilTime::new(t.hour(), t.minute(), 0, 0).unwrap()
                } else {
                    CivilTime::new(cases.below(24) as i8, cases.below(60) as i8, 0, 0).unwrap()
                };
                let ours = zone.next_wall_time(Timestamp::from_jiff(now), time);
                let walked = next_by_walking(&zone, now, time);
                assert_eq!(
                    ours.to_jiff(),
                    walked,
                    "{name}: next {time} after {now} (local {})",
                    wall(&zone, now)
                );
                let wait = crate::journey::Wait::NextLocal(time);
                assert_eq!(
                    wait.ends(Timestamp::from_jiff(now), &zone).to_jiff(),
                    walked
                );
                // A quiet window ending at `time`, starting a random number of hours before it.
                let start = time.wrapping_sub(jiff::SignedDuration::from_mins(
                    30 * (1 + cases.below(46) as i64),
                ));
                let start = CivilTime::new(start.hour(), start.minute(), 0, 0).unwrap();
                let q = QuietHours { start, end: time };
                assert_eq!(
                    q.until(Timestamp::from_jiff(now), &zone)
                        .map(Timestamp::to_jiff),
                    quiet_end_by_walking(&zone, &q, now),
                    "{name}: quiet {start}–{time} at {now} (local {})",
                    wall(&zone, now)
                );
                checked += 1;
                near_changes += usize::from(!changes.is_empty());
            }
        }
        assert!(
            checked > 3000 && near_changes > 2000,
            "{checked} cases, {near_changes} near changes"
        );
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
