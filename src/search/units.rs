//! UCUM canonical units: a quantity coded in UCUM is also indexed, and searched, in the base
//! units of its dimension, so `70 kg` is found by
//! `value-quantity=gt60000|http://unitsofmeasure.org|g`. Amounts of substance are keyed apart
//! from counts; dimensionless units are not converted.

use std::cell::RefCell;
use std::collections::HashMap;

/// The UCUM code system.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// How many analysed units each thread keeps.
const CACHE: usize = 4096;

/// A UCUM unit in base units: the key of its dimension and the linear conversion to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    /// `u:` and the dimension in base units (`u:g.m-3`): equal for commensurable units.
    pub key: String,
    factor: f64,
    offset: f64,
}

impl Canonical {
    /// The canonical form of `code` in `system`: only UCUM units with a linear conversion
    /// (special units such as logarithms and arbitrary units have none).
    pub fn of(system: Option<&str>, code: &str) -> Option<Canonical> {
        if system != Some(UCUM) {
            return None;
        }
        thread_local! {
            static ANALYSED: RefCell<HashMap<String, Option<Canonical>>> =
                RefCell::new(HashMap::new());
        }
        ANALYSED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(known) = cache.get(code) {
                return known.clone();
            }
            let canonical = ucum::analyze(code)
                .ok()
                .filter(|a| {
                    !a.is_special && !a.is_dimensionless && a.factor.is_finite() && a.factor > 0.0
                })
                .map(|a| Canonical {
                    key: format!(
                        "u:{}{}",
                        a.dimension,
                        if is_substance(code) { ";mol" } else { "" }
                    ),
                    factor: a.factor,
                    offset: a.offset,
                });
            if cache.len() >= CACHE {
                cache.clear();
            }
            cache.insert(code.to_string(), canonical.clone());
            canonical
        })
    }

    /// `value` in base units.
    pub fn convert(&self, value: f64) -> f64 {
        value * self.factor + self.offset
    }
}

/// Whether `code` measures an amount of substance (mol, eq, the enzyme unit U, kat).
///
/// UCUM defines the mole as a plain number (6.0221367e23), which makes `mmol/L` commensurable
/// with cell counts such as `10*3/uL`; amounts of substance are therefore keyed apart.
/// Dimensionless units (`%`, `{score}`) are not canonicalised at all, for the same reason.
fn is_substance(code: &str) -> bool {
    code.split(|c: char| !c.is_ascii_alphabetic()).any(|atom| {
        let unprefixed = atom
            .strip_prefix(['k', 'm', 'u', 'n', 'p', 'f', 'd', 'c'])
            .unwrap_or(atom);
        ["mol", "eq", "U", "kat"].contains(&atom) || ["mol", "eq", "U", "kat"].contains(&unprefixed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commensurable_units_share_a_key_and_convert_to_base_units() {
        let kg = Canonical::of(Some(UCUM), "kg").unwrap();
        let g = Canonical::of(Some(UCUM), "g").unwrap();
        assert_eq!(kg.key, g.key);
        assert_eq!(kg.convert(70.0), 70_000.0);
        let mg_dl = Canonical::of(Some(UCUM), "mg/dL").unwrap();
        let g_l = Canonical::of(Some(UCUM), "g/L").unwrap();
        assert_eq!(mg_dl.key, g_l.key);
        assert!((mg_dl.convert(100.0) - g_l.convert(1.0)).abs() < 1e-9);
        assert_ne!(kg.key, Canonical::of(Some(UCUM), "m").unwrap().key);
        assert!(Canonical::of(Some("http://example.org"), "kg").is_none());
        assert!(Canonical::of(Some(UCUM), "not a unit").is_none());
        // Substances and counts stay apart; dimensionless units are not canonical.
        let mmol = Canonical::of(Some(UCUM), "mmol/L").unwrap();
        assert_eq!(mmol.key, Canonical::of(Some(UCUM), "umol/mL").unwrap().key);
        assert_ne!(mmol.key, Canonical::of(Some(UCUM), "10*3/uL").unwrap().key);
        assert_ne!(
            Canonical::of(Some(UCUM), "U/L").unwrap().key,
            Canonical::of(Some(UCUM), "/min/L").unwrap().key
        );
        assert!(Canonical::of(Some(UCUM), "%").is_none());
        assert!(Canonical::of(Some(UCUM), "{score}").is_none());
    }
}
