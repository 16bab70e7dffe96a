//! `lowBoundary()` and `highBoundary()`: the least and the greatest value a decimal, date,
//! dateTime or time written to some precision may stand for (`1.0` is 0.95 to 1.05,
//! `1970-06` is 1970-06-01 to 1970-06-30, a dateTime without a time zone spans every zone
//! from +14:00 to -12:00). Without a precision argument, to the full precision of the type.
//!
//! The type comes from the item when the JSON tells it (`valueDateTime`), else from the
//! shape of the text: with a `T` a dateTime, `YYYY[-MM[-DD]]` a date, `hh:mm[:ss]` a time.
//! Anything that is none of these has no boundary (empty).

use super::eval::Item;
use serde_json::Value;

/// Which boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    Low,
    High,
}

/// The boundary of one item, or None when it has none.
pub(super) fn boundary<'a>(item: &Item<'a>, bound: Bound) -> Option<Item<'a>> {
    let (text, ty) = match item {
        Item::Node {
            value: Value::Number(n),
            ..
        } => return decimal(&n.to_string(), bound).map(Item::Number),
        Item::Number(n) => return decimal(&n.to_string(), bound).map(Item::Number),
        Item::Node {
            value: Value::String(s),
            ty,
        } => (s.as_str(), ty.as_deref()),
        Item::Str(s) => (s.as_str(), None),
        _ => return None,
    };
    let made = match ty {
        Some("date") => date(text, bound),
        Some("dateTime" | "instant") => date_time(text, bound),
        Some("time") => time(text, bound),
        _ if text.contains('T') => date_time(text, bound),
        _ if text.contains(':') => time(text, bound),
        _ => date(text, bound),
    }?;
    Some(Item::Str(made))
}

/// A decimal written as `text`: half a unit of its last digit below or above it.
fn decimal(text: &str, bound: Bound) -> Option<f64> {
    if text.contains(['e', 'E']) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    let digits = text
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    let half = 0.5 * 10f64.powi(-(digits as i32));
    let bounded = match bound {
        Bound::Low => value - half,
        Bound::High => value + half,
    };
    // Rounded to the one more digit it has, so that 1.0 - 0.05 is 0.95 and not 0.9500000001.
    format!("{:.*}", digits + 1, bounded).parse().ok()
}

/// Whether `text` is `n` ASCII digits.
fn digits(text: &str, n: usize) -> bool {
    text.len() == n && text.bytes().all(|b| b.is_ascii_digit())
}

/// A date `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, filled to a day.
fn date(text: &str, bound: Bound) -> Option<String> {
    let mut parts = text.split('-');
    let year = parts.next().filter(|y| digits(y, 4))?;
    let month = parts.next();
    let day = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let month = match month {
        Some(m) if digits(m, 2) && ("01"..="12").contains(&m) => m.to_string(),
        Some(_) => return None,
        None if bound == Bound::Low => "01".into(),
        None => "12".into(),
    };
    let last = days_in_month(year.parse().ok()?, month.parse().ok()?);
    let day = match day {
        Some(d) if digits(d, 2) && (1..=last).contains(&d.parse().ok()?) => d.to_string(),
        Some(_) => return None,
        None if bound == Bound::Low => "01".into(),
        None => format!("{last:02}"),
    };
    Some(format!("{year}-{month}-{day}"))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A time `hh:mm[:ss[.fff]]`, filled to milliseconds.
fn time(text: &str, bound: Bound) -> Option<String> {
    let mut parts = text.splitn(3, ':');
    let hour = parts.next().filter(|h| digits(h, 2))?;
    let minute = parts.next().filter(|m| digits(m, 2))?;
    let (second, fraction) = match parts.next() {
        None => (None, None),
        Some(rest) => match rest.split_once('.') {
            Some((s, f)) => (Some(s), Some(f)),
            None => (Some(rest), None),
        },
    };
    let second = match second {
        Some(s) if digits(s, 2) => s,
        Some(_) => return None,
        None if bound == Bound::Low => "00",
        None => "59",
    };
    let fill = if bound == Bound::Low { '0' } else { '9' };
    let mut fraction = match fraction {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => f.to_string(),
        Some(_) => return None,
        None => String::new(),
    };
    while fraction.len() < 3 {
        fraction.push(fill);
    }
    Some(format!("{hour}:{minute}:{second}.{fraction}"))
}

/// A dateTime: its date filled to a day, its time to milliseconds, its zone (when it has
/// none) the farthest one the bound can be in.
fn date_time(text: &str, bound: Bound) -> Option<String> {
    let (day, clock) = match text.split_once('T') {
        Some((day, clock)) => (day, Some(clock)),
        None => (text, None),
    };
    let widest_zone = if bound == Bound::Low {
        "+14:00"
    } else {
        "-12:00"
    };
    let day = date(day, bound)?;
    let Some(clock) = clock else {
        let midnight = if bound == Bound::Low {
            "00:00:00.000"
        } else {
            "23:59:59.999"
        };
        return Some(format!("{day}T{midnight}{widest_zone}"));
    };
    let (clock, zone) = match clock.find(['Z', '+', '-']) {
        Some(at) => (&clock[..at], &clock[at..]),
        None => (clock, widest_zone),
    };
    Some(format!("{day}T{}{zone}", time(clock, bound)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::borrow::Cow;

    fn bounds(
        value: Value,
        ty: Option<&'static str>,
    ) -> (Option<Item<'static>>, Option<Item<'static>>) {
        let value: &'static Value = Box::leak(Box::new(value));
        let item = Item::Node {
            value,
            ty: ty.map(Cow::Borrowed),
        };
        (boundary(&item, Bound::Low), boundary(&item, Bound::High))
    }

    fn text(s: &str) -> Option<Item<'static>> {
        Some(Item::Str(s.into()))
    }

    #[test]
    fn decimals_span_half_their_last_digit() {
        assert_eq!(
            bounds(json!(1.0), None),
            (Some(Item::Number(0.95)), Some(Item::Number(1.05)))
        );
        assert_eq!(
            bounds(json!(12), None),
            (Some(Item::Number(11.5)), Some(Item::Number(12.5)))
        );
    }

    #[test]
    fn dates_times_and_date_times_fill_their_precision() {
        assert_eq!(
            bounds(json!("1970-06"), None),
            (text("1970-06-01"), text("1970-06-30"))
        );
        assert_eq!(bounds(json!("2000-02"), Some("date")).1, text("2000-02-29"));
        assert_eq!(
            bounds(json!("1900"), None),
            (text("1900-01-01"), text("1900-12-31"))
        );
        assert_eq!(
            bounds(json!("2010-10-10"), Some("dateTime")),
            (
                text("2010-10-10T00:00:00.000+14:00"),
                text("2010-10-10T23:59:59.999-12:00")
            )
        );
        assert_eq!(
            bounds(json!("2010-10-10T10:00Z"), None),
            (
                text("2010-10-10T10:00:00.000Z"),
                text("2010-10-10T10:00:59.999Z")
            )
        );
        assert_eq!(
            bounds(json!("12:34:00"), Some("time")),
            (text("12:34:00.000"), text("12:34:00.999"))
        );
    }

    #[test]
    fn what_is_no_date_has_no_boundary() {
        assert_eq!(bounds(json!("1970-13"), None), (None, None));
        assert_eq!(bounds(json!("hello"), None), (None, None));
        assert_eq!(bounds(json!({"a": 1}), None), (None, None));
        assert_eq!(bounds(json!("1970-02-30"), Some("date")), (None, None));
    }
}
