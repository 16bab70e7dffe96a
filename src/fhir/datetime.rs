//! FHIR instants and dates as microseconds since the Unix epoch (UTC).
//!
//! Every time fhirlake stores is an [`Micros`] value; a FHIR date or dateTime written at some
//! precision (a year, a day, a second...) stands for the whole [`Period`] it names, as the FHIR
//! search page says: `2020` is all of 2020, `2020-03-01T10:00:00Z` is that one second.

use time::format_description::well_known::Rfc3339;
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

/// Parses a FHIR date, dateTime or instant at any precision (`2020`, `2020-03`, `2020-03-01`,
/// `2020-03-01T10:00`, `2020-03-01T10:00:00`, `2020-03-01T10:00:00.123+02:00`) into the period
/// it names. A time without an offset is taken as UTC.
pub fn parse_period(text: &str) -> Result<Period, String> {
    let invalid = || format!("'{text}' is not a valid FHIR date or dateTime");
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year = number(fields.next(), 4).ok_or_else(invalid)?;
    let mut next_field = || match fields.next() {
        Some(text) => number(Some(text), 2).map(Some).ok_or_else(invalid),
        None => Ok(None),
    };
    let month = next_field()?;
    let day = next_field()?;
    if next_field().is_ok_and(|extra| extra.is_some()) || date_part.matches('-').count() > 2 {
        return Err(invalid());
    }
    let date = |m: u32, d: u32| {
        Month::try_from(m as u8)
            .ok()
            .and_then(|m| Date::from_calendar_date(year as i32, m, d as u8).ok())
    };
    let at_midnight = |d: Date| to_micros(d.midnight().assume_utc());
    match (month, day, time_part) {
        (None, None, None) => {
            let start = date(1, 1).ok_or_else(invalid)?;
            let end = date(1, 1)
                .and_then(|d| d.replace_year(year as i32 + 1).ok())
                .ok_or_else(invalid)?;
            Ok(Period {
                start: at_midnight(start),
                end: at_midnight(end),
            })
        }
        (Some(m), None, None) => {
            let start = date(m, 1).ok_or_else(invalid)?;
            let end = if m == 12 {
                Date::from_calendar_date(year as i32 + 1, Month::January, 1).ok()
            } else {
                date(m + 1, 1)
            }
            .ok_or_else(invalid)?;
            Ok(Period {
                start: at_midnight(start),
                end: at_midnight(end),
            })
        }
        (Some(m), Some(d), None) => {
            let start = at_midnight(date(m, d).ok_or_else(invalid)?);
            Ok(Period {
                start,
                end: start + 86_400_000_000,
            })
        }
        (Some(m), Some(d), Some(time)) => {
            let day = date(m, d).ok_or_else(invalid)?;
            parse_time(day, time).ok_or_else(invalid)
        }
        _ => Err(invalid()),
    }
}

/// `hh:mm[:ss[.fraction]][Z|+hh:mm|-hh:mm]` on `day`.
fn parse_time(day: Date, text: &str) -> Option<Period> {
    let split = text.find(['Z', '+', '-']).unwrap_or(text.len());
    let (clock, zone) = text.split_at(split);
    let offset = match zone {
        "" | "Z" => UtcOffset::UTC,
        _ => {
            let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            let (h, m) = (number(Some(h), 2)? as i8, number(Some(m), 2)? as i8);
            UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    let mut parts = clock.split(':');
    let hour = number(parts.next(), 2)?;
    let minute = number(parts.next(), 2)?;
    let (second, fraction) = match parts.next() {
        Some(s) => match s.split_once('.') {
            Some((s, f)) => (Some(number(Some(s), 2)?), Some(f)),
            None => (Some(number(Some(s), 2)?), None),
        },
        None => (None, None),
    };
    if parts.next().is_some() {
        return None;
    }
    let time = Time::from_hms(hour as u8, minute as u8, second.unwrap_or(0) as u8).ok()?;
    let start = to_micros(PrimitiveDateTime::new(day, time).assume_offset(offset));
    let (start, width) = match (second, fraction) {
        (None, _) => (start, 60_000_000),
        (Some(_), None) => (start, 1_000_000),
        (Some(_), Some(f)) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = &f[..f.len().min(6)];
            let unit = 10i64.pow(6 - digits.len() as u32);
            (start + digits.parse::<i64>().ok()? * unit, unit)
        }
    };
    Some(Period {
        start,
        end: start + width,
    })
}

/// A run of exactly `width` ASCII digits.
fn number(text: Option<&str>, width: usize) -> Option<u32> {
    let text = text?;
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Is `text` a valid RFC 3339 timestamp? (Used where FHIR requires a full `instant`.)
pub fn is_instant(text: &str) -> bool {
    OffsetDateTime::parse(text, &Rfc3339).is_ok()
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
            prop_assert!(is_instant(&text));
            let p = parse_period(&text).unwrap();
            prop_assert_eq!(p, Period { start: micros, end: micros + 1 });
        }

        #[test]
        fn the_parser_never_panics(text in "[0-9T:.Z+-]{0,30}") {
            let _ = parse_period(&text);
        }
    }
}
