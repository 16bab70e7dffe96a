//! FHIR instants and dates as microseconds since the Unix epoch (UTC).
//!
//! Every time fhirlake stores is an [`Micros`] value; a FHIR date or dateTime written at some
//! precision (a year, a day, a second...) stands for the whole [`Period`] it names, as the FHIR
//! search page says: `2020` is all of 2020, `2020-03-01T10:00:00Z` is that one second.

use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// The half-open interval `[start, end)` a date or dateTime of some precision stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: Micros,
    pub end: Micros,
}

/// The current time.
pub fn now() -> Micros {
    to_micros(OffsetDateTime::now_utc())
}

fn to_micros(time: OffsetDateTime) -> Micros {
    (time.unix_timestamp_nanos() / 1_000) as Micros
}

fn from_micros(micros: Micros) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A FHIR `instant` in UTC with microseconds, e.g. `2026-11-23T17:52:24.123456Z`.
pub fn format_instant(micros: Micros) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    from_micros(micros)
        .format(format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// An HTTP date (RFC 9110 IMF-fixdate), for `Last-Modified`: second precision.
pub fn format_http_date(micros: Micros) -> String {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    from_micros(micros)
        .format(format)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 GMT".into())
}

/// Parses an HTTP date (`If-Modified-Since`) to the start of its second.
pub fn parse_http_date(text: &str) -> Option<Micros> {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    PrimitiveDateTime::parse(text.trim(), format)
        .ok()
        .map(|t| to_micros(t.assume_utc()))
}

/// A FHIR date, dateTime, instant or time of day as written, at the precision it was written,
/// every field checked against the calendar and the clock: a year 0001-9999, a day of that
/// month of that year, hours 00-23, minutes 00-59, seconds 00-60 (60: a leap second), and an
/// offset from -14:00 to +14:00 (at most 13:59 but for 14:00 itself, as R4 writes it).
///
/// [`parse_written`] is the one parser of dates and times of fhirlake: the periods of search
/// and FHIRPath ([`parse_period`]) and the checks of the primitive types ([`check_temporal`])
/// are made from what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub year: u16,
    pub month: Option<u8>,
    pub day: Option<u8>,
    pub clock: Option<Clock>,
    /// The offset from UTC in seconds; None when no zone is written (`Z` is `Some(0)`).
    pub offset: Option<i32>,
}

/// A time of day as written (`hh:mm`, `hh:mm:ss`, `hh:mm:ss.fraction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub hour: u8,
    pub minute: u8,
    pub second: Option<u8>,
    /// The fraction of the second: its first six digits in microseconds, and the width of the
    /// last digit kept (a tenth of a second for `.5`, a microsecond from six digits on).
    pub fraction: Option<(i64, i64)>,
}

/// Reads a date (`2020`, `2020-03`, `2020-03-01`), optionally followed by `T` and a time of day
/// with or without a zone (`Z`, `+hh:mm`, `-hh:mm`). None when it is not one, or names no day
/// of the calendar or no time of the clock.
pub fn parse_written(text: &str) -> Option<Written> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year = number(fields.next(), 4)? as u16;
    let month = match fields.next() {
        None => None,
        Some(m) => Some(number(Some(m), 2).filter(|m| (1..=12).contains(m))? as u8),
    };
    // A day only follows a month.
    let day = match (month, fields.next()) {
        (Some(m), Some(d)) => {
            let last = Month::try_from(m).ok()?.length(year as i32);
            Some(number(Some(d), 2).filter(|d| (1..=last as u32).contains(d))? as u8)
        }
        _ => None,
    };
    if year == 0 || fields.next().is_some() {
        return None;
    }
    let (clock, offset) = match time_part {
        None => (None, None),
        Some(_) if day.is_none() => return None,
        Some(text) => {
            let split = text.find(['Z', '+', '-']).unwrap_or(text.len());
            let (clock, zone) = text.split_at(split);
            (Some(parse_clock(clock)?), parse_zone(zone)?)
        }
    };
    Some(Written {
        year,
        month,
        day,
        clock,
        offset,
    })
}

/// `hh:mm[:ss[.fraction]]`.
fn parse_clock(text: &str) -> Option<Clock> {
    let mut parts = text.split(':');
    let hour = number(parts.next(), 2).filter(|h| *h < 24)? as u8;
    let minute = number(parts.next(), 2).filter(|m| *m < 60)? as u8;
    let (second, fraction) = match parts.next() {
        None => (None, None),
        Some(s) => {
            let (s, fraction) = match s.split_once('.') {
                Some((s, f)) => (s, Some(fraction(f)?)),
                None => (s, None),
            };
            (
                Some(number(Some(s), 2).filter(|s| *s <= 60)? as u8),
                fraction,
            )
        }
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Clock {
        hour,
        minute,
        second,
        fraction,
    })
}

/// The digits after a second's decimal point, as (microseconds, width of the last digit kept).
fn fraction(digits: &str) -> Option<(i64, i64)> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kept = &digits[..digits.len().min(6)];
    let unit = 10i64.pow(6 - kept.len() as u32);
    Some((kept.parse::<i64>().ok()? * unit, unit))
}

/// `""` (no zone: `Some(None)`), `Z`, or `+hh:mm` / `-hh:mm` up to 14:00; None when invalid.
fn parse_zone(zone: &str) -> Option<Option<i32>> {
    let sign = match zone.as_bytes().first() {
        None => return Some(None),
        Some(b'Z') if zone.len() == 1 => return Some(Some(0)),
        Some(b'+') => 1,
        Some(b'-') => -1,
        Some(_) => return None,
    };
    let (h, m) = zone[1..].split_once(':')?;
    let (h, m) = (number(Some(h), 2)?, number(Some(m), 2)?);
    if m >= 60 || h > 14 || (h == 14 && m != 0) {
        return None;
    }
    Some(Some(sign * (h as i32 * 3600 + m as i32 * 60)))
}

/// Parses a FHIR date, dateTime or instant at any precision (`2020`, `2020-03`, `2020-03-01`,
/// `2020-03-01T10:00`, `2020-03-01T10:00:00`, `2020-03-01T10:00:00.123+02:00`) into the period
/// it names. A time without an offset is taken as UTC; a leap second (`23:59:60`) as the
/// second before it.
pub fn parse_period(text: &str) -> Result<Period, String> {
    let invalid = || format!("'{text}' is not a valid FHIR date or dateTime");
    let written = parse_written(text).ok_or_else(invalid)?;
    let year = written.year as i32;
    let date = |m: u8, d: u8| {
        Month::try_from(m)
            .ok()
            .and_then(|m| Date::from_calendar_date(year, m, d).ok())
    };
    let at_midnight = |d: Date| to_micros(d.midnight().assume_utc());
    let next_year = || Date::from_calendar_date(year + 1, Month::January, 1).ok();
    let (start, end) = match (written.month, written.day, written.clock) {
        (None, _, _) => (date(1, 1), next_year()),
        (Some(m), None, _) => (
            date(m, 1),
            if m == 12 { next_year() } else { date(m + 1, 1) },
        ),
        (Some(m), Some(d), None) => {
            let start = at_midnight(date(m, d).ok_or_else(invalid)?);
            return Ok(Period {
                start,
                end: start + 86_400_000_000,
            });
        }
        (Some(m), Some(d), Some(clock)) => {
            let day = date(m, d).ok_or_else(invalid)?;
            return clock_period(day, clock, written.offset.unwrap_or(0)).ok_or_else(invalid);
        }
    };
    match (start, end) {
        (Some(start), Some(end)) => Ok(Period {
            start: at_midnight(start),
            end: at_midnight(end),
        }),
        _ => Err(invalid()),
    }
}

/// The period a time of day on `day` at `offset` seconds from UTC names: its minute, second or
/// fraction of a second.
fn clock_period(day: Date, clock: Clock, offset: i32) -> Option<Period> {
    let offset = UtcOffset::from_whole_seconds(offset).ok()?;
    let second = clock.second.unwrap_or(0).min(59);
    let time = Time::from_hms(clock.hour, clock.minute, second).ok()?;
    let start = to_micros(PrimitiveDateTime::new(day, time).assume_offset(offset));
    let (start, width) = match (clock.second, clock.fraction) {
        (None, _) => (start, 60_000_000),
        (Some(_), None) => (start, 1_000_000),
        (Some(_), Some((micros, unit))) => (start + micros, unit),
    };
    Some(Period {
        start,
        end: start + width,
    })
}

/// The FHIR primitive types of dates and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporal {
    /// `date`: a year, a month or a day; no time.
    Date,
    /// `dateTime`: a `date`, or a day with a time to the second and a zone.
    DateTime,
    /// `instant`: a day with a time to the second and a zone.
    Instant,
    /// `time`: a time of day to the second, without a zone.
    Time,
}

/// Checks `text` as a value of the primitive type `kind`: R4's regular expression of the type
/// and the calendar ([`Written`]). The error says what is wrong, for a client to read.
pub fn check_temporal(kind: Temporal, text: &str) -> Result<(), &'static str> {
    let full = |clock: &Clock| clock.second.is_some();
    match kind {
        Temporal::Time => match parse_clock(text) {
            Some(clock) if full(&clock) => Ok(()),
            _ => Err("a time is hh:mm:ss, with an optional fraction of a second and no zone"),
        },
        Temporal::Date => match parse_written(text) {
            Some(written) if written.clock.is_none() => Ok(()),
            _ => Err("a date is YYYY, YYYY-MM or YYYY-MM-DD, a day of the calendar"),
        },
        Temporal::DateTime => match parse_written(text) {
            Some(Written { clock: None, .. }) => Ok(()),
            Some(Written {
                clock: Some(clock),
                offset: Some(_),
                ..
            }) if full(&clock) => Ok(()),
            _ => Err(
                "a dateTime is YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm:ss with an optional \
                 fraction of a second and a zone (Z or +hh:mm), of the calendar",
            ),
        },
        Temporal::Instant => match parse_written(text) {
            Some(Written {
                day: Some(_),
                clock: Some(clock),
                offset: Some(_),
                ..
            }) if full(&clock) => Ok(()),
            _ => Err(
                "an instant is YYYY-MM-DDThh:mm:ss with an optional fraction of a second and a \
                 zone (Z or +hh:mm), of the calendar",
            ),
        },
    }
}

/// A run of exactly `width` ASCII digits.
fn number(text: Option<&str>, width: usize) -> Option<u32> {
    let text = text?;
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn period(text: &str) -> Period {
        parse_period(text).unwrap()
    }

    #[test]
    fn each_precision_names_its_whole_period() {
        let year = period("2020");
        assert_eq!(format_instant(year.start), "2020-01-01T00:00:00.000000Z");
        assert_eq!(format_instant(year.end), "2021-01-01T00:00:00.000000Z");
        let month = period("2020-02");
        assert_eq!(format_instant(month.end), "2020-03-01T00:00:00.000000Z");
        let december = period("2020-12");
        assert_eq!(format_instant(december.end), "2021-01-01T00:00:00.000000Z");
        let day = period("2020-02-29");
        assert_eq!(format_instant(day.end), "2020-03-01T00:00:00.000000Z");
        let minute = period("2020-02-29T10:15Z");
        assert_eq!(minute.end - minute.start, 60_000_000);
        let second = period("2020-02-29T10:15:30+02:00");
        assert_eq!(format_instant(second.start), "2020-02-29T08:15:30.000000Z");
        assert_eq!(second.end - second.start, 1_000_000);
        let millis = period("2020-02-29T10:15:30.25-05:00");
        assert_eq!(format_instant(millis.start), "2020-02-29T15:15:30.250000Z");
        assert_eq!(millis.end - millis.start, 10_000);
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for text in [
            "",
            "20",
            "2020-13",
            "2020-02-30",
            "2020-1-01",
            "2020-01-01T25:00Z",
            "2020-01-01T10",
            "2020-01-01T10:00:00.Z",
            "2020-01-01T10:00:00+2:00",
            "abcd",
            "2020-01-01-01",
        ] {
            assert!(parse_period(text).is_err(), "{text} must be rejected");
        }
    }

    #[test]
    fn http_dates_round_trip_to_the_second() {
        let t = period("2026-11-23T17:52:24.5Z").start;
        let http = format_http_date(t);
        assert_eq!(http, "Mon, 23 Nov 2026 17:52:24 GMT");
        assert_eq!(parse_http_date(&http), Some(t - 500_000));
    }

    proptest! {
        #[test]
        fn every_instant_reads_back_as_its_own_microsecond(micros in 0i64..4_102_444_800_000_000) {
            let text = format_instant(micros);
            prop_assert_eq!(check_temporal(Temporal::Instant, &text), Ok(()));
            let p = parse_period(&text).unwrap();
            prop_assert_eq!(p, Period { start: micros, end: micros + 1 });
        }

        #[test]
        fn the_parser_never_panics(text in "[0-9T:.Z+-]{0,30}") {
            let _ = parse_period(&text);
        }
    }
}
