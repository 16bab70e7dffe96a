//! `near` (Location.position): positions within a distance of a point.
//!
//! A position is indexed as a latitude and a longitude point term plus their pair; a box on
//! each coordinate finds the candidates, and a predicate keeps those within the great-circle
//! distance (in any UCUM length unit).

use super::{ENCODED, Pairs, Scope, Span};
use crate::search::terms::{self, encode_f64, kind};
use crate::search::units::{Canonical, UCUM};
use std::ops::Bound;
use tantivy::query::doc_predicate_query::{
    DocPredicateQuery, FunctionPredicate, SegmentDocPredicate,
};
use tantivy::query::{BooleanQuery, Query};
use tantivy::{DocId, SegmentReader};

/// The mean radius of the Earth, in metres.
const EARTH_RADIUS: f64 = 6_371_008.8;

/// `near=latitude|longitude|distance|units` (Location.position): positions within the
/// distance (50 km when it is left out; any UCUM length unit, km when left out). Candidates
/// come from a box on each coordinate; a predicate keeps those within the great-circle
/// distance.
pub(super) fn query(scope: Scope<'_>, value: &str) -> Result<Box<dyn Query>, String> {
    let parts = super::split_unescaped(value, '|');
    let number = |i: usize| -> Result<Option<f64>, String> {
        parts
            .get(i)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or(format!("'{p}' is not a number"))
            })
            .transpose()
    };
    let (Some(latitude), Some(longitude)) = (number(0)?, number(1)?) else {
        return Err("near is latitude|longitude[|distance[|units]]".into());
    };
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err("a latitude is within ±90 and a longitude within ±180 degrees".into());
    }
    let unit = parts.get(3).map(String::as_str).filter(|u| !u.is_empty());
    let metre = Canonical::of(Some(UCUM), "m").expect("the metre is a UCUM unit");
    let length = Canonical::of(Some(UCUM), unit.unwrap_or("km"))
        .filter(|c| c.key == metre.key)
        .ok_or("the distance's unit must be a UCUM length such as km or [mi_i]")?;
    let metres = length.convert(number(2)?.unwrap_or(50.0)).abs();
    // The box: degrees of latitude are of equal length; degrees of longitude shrink with
    // the cosine of the latitude, taken where the box comes nearest a pole.
    let degrees = (metres / EARTH_RADIUS).to_degrees();
    let nearest_pole = (latitude.abs() + degrees).min(90.0);
    let longitude_degrees = degrees / nearest_pole.to_radians().cos().max(1e-9);
    let f = encode_f64;
    let span = |key: &str, low: f64, high: f64| {
        scope.span(
            kind::POINT,
            key,
            Bound::Included(f(low)),
            Bound::Included(f(high)),
        )
    };
    let latitudes = span(terms::LATITUDE, latitude - degrees, latitude + degrees);
    let mut clauses = vec![latitudes.query()];
    if longitude - longitude_degrees >= -180.0 && longitude + longitude_degrees <= 180.0 {
        // (A box across the antimeridian or a pole checks every longitude.)
        clauses.push(
            span(
                terms::LONGITUDE,
                longitude - longitude_degrees,
                longitude + longitude_degrees,
            )
            .query(),
        );
    }
    let predicate = FunctionPredicate::from(move |segment: &SegmentReader| {
        Ok(NearCheck {
            pairs: Pairs::open(segment)?,
            latitudes: latitudes.clone(),
            centre: (latitude, longitude),
            metres,
        })
    });
    clauses.push(Box::new(DocPredicateQuery::from(predicate)));
    Ok(Box::new(BooleanQuery::intersection(clauses)))
}

/// The great-circle distance between two positions in degrees, in metres (haversine).
fn distance((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let half_dphi = (phi2 - phi1) / 2.0;
    let half_dlambda = (lon2 - lon1).to_radians() / 2.0;
    let a = half_dphi.sin().powi(2) + phi1.cos() * phi2.cos() * half_dlambda.sin().powi(2);
    2.0 * EARTH_RADIUS * a.sqrt().min(1.0).asin()
}

/// The check of [`query`] in one segment: a position of the document within `metres`.
struct NearCheck {
    pairs: Pairs,
    /// For the scope of the latitude terms.
    latitudes: Span,
    centre: (f64, f64),
    metres: f64,
}

impl SegmentDocPredicate for NearCheck {
    fn eval(&mut self, doc: DocId) -> bool {
        let value = |term: &[u8]| {
            let encoded = std::str::from_utf8(&term[term.len().saturating_sub(ENCODED)..]).ok()?;
            terms::decode_f64(encoded)
        };
        let (latitudes, centre, metres) = (&self.latitudes, self.centre, self.metres);
        self.pairs.any(doc, |latitude, longitude| {
            latitudes.in_scope(latitude)
                && matches!((value(latitude), value(longitude)),
                    (Some(lat), Some(lon)) if distance(centre, (lat, lon)) <= metres)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_great_circles() {
        // Boston to New York City: about 306 km.
        let d = distance((42.3601, -71.0589), (40.7128, -74.0060));
        assert!((d - 306_000.0).abs() < 2_000.0, "{d}");
        assert_eq!(distance((10.0, 20.0), (10.0, 20.0)), 0.0);
        // Across the antimeridian, the short way round.
        assert!(distance((0.0, 179.9), (0.0, -179.9)) < 23_000.0);
    }
}
