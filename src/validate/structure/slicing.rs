//! The slicings of a profile: which slice each value of a sliced element is in, by the
//! discriminators of the slicing (`value`, `pattern`, `exists`, `type`, `profile`) evaluated
//! on the value against what each slice expects (through nested slices and, for extensions, by
//! the `url` the slice's type profile fixes); then the slices' cardinality, the `closed` and
//! `ordered` rules, and each value checked against its slice.
//!
//! Invariant: a discriminator that cannot be evaluated here (a path through `resolve()` or
//! another function, a profile that is not registered, a slice that does not say what it
//! expects at the path) gives [`Fit::Unknown`], never [`Fit::No`]: a value is never held out
//! of a slice it may be in.

use super::{Severity, Walk, matches_pattern};
use crate::fhir::IssueCode;
use crate::validate::definitions::{Definition, Discriminator, ElementDef, Slicing};
use serde_json::Value;

impl<'d> Walk<'d, '_> {
    /// The values of a sliced element (of a profile): each put in the first slice whose
    /// discriminators it matches, then each slice's cardinality and the `closed` and
    /// `ordered` rules checked, and each value checked against its slice (or against the
    /// sliced element when it is in none).
    pub(super) fn sliced(
        &mut self,
        definition: &'d Definition,
        element: &'d ElementDef,
        slicing: &Slicing,
        values: Vec<(Option<&'d str>, &Value, String)>,
        resources: [&Value; 2],
        location: &str,
    ) {
        let slices: Vec<&'d ElementDef> = definition.slices(element.key()).collect();
        let slice_name = |slice: &ElementDef| slice.slice_name.clone().unwrap_or_default();
        let mut counts = vec![0; slices.len()];
        let mut homes = Vec::with_capacity(values.len());
        // Some value may be in a slice that could not be told: minimums are not checked.
        let mut undecided = false;
        let mut last = 0;
        for (ty, item, at) in &values {
            let mut unknown = false;
            let home = slices.iter().position(|slice| {
                match self.fits(definition, slicing, slice, *ty, item, resources) {
                    Fit::Yes => true,
                    Fit::No => false,
                    Fit::Unknown => {
                        unknown = true;
                        false
                    }
                }
            });
            match home {
                Some(n) => {
                    counts[n] += 1;
                    if slicing.ordered && n < last {
                        self.issue(
                            Severity::Error,
                            IssueCode::Structure,
                            at,
                            format!(
                                "{}: a value of slice '{}' after one of slice '{}', against the order of the slices",
                                element.path,
                                slice_name(slices[n]),
                                slice_name(slices[last])
                            ),
                        );
                    }
                    last = last.max(n);
                }
                None if unknown => undecided = true,
                None if slicing.rules == "closed" => self.issue(
                    Severity::Error,
                    IssueCode::Structure,
                    at,
                    format!(
                        "{} is sliced closed and this value is in none of its slices ({})",
                        element.path,
                        slices
                            .iter()
                            .map(|s| slice_name(s))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                None => {}
            }
            homes.push(home);
        }
        if undecided {
            self.unchecked(format!("slicing {}", element.key()));
        }
        for (slice, count) in slices.iter().zip(counts) {
            if count < slice.min as usize && !undecided {
                self.issue(
                    Severity::Error,
                    IssueCode::Required,
                    location,
                    format!(
                        "{} needs at least {} value(s) in slice '{}', it has {count}",
                        element.path,
                        slice.min,
                        slice_name(slice)
                    ),
                );
            }
            if slice.max().is_some_and(|max| count > max) {
                self.issue(
                    Severity::Error,
                    IssueCode::Structure,
                    location,
                    format!(
                        "{} allows at most {} value(s) in slice '{}', it has {count}",
                        element.path,
                        slice.max,
                        slice_name(slice)
                    ),
                );
            }
        }
        for ((ty, item, at), home) in values.into_iter().zip(homes) {
            let target = home.map_or(element, |n| slices[n]);
            self.value(definition, target, ty, item, resources, &at);
        }
    }

    /// Whether `item` (of type `ty`) is in `slice` by every discriminator of `slicing`.
    fn fits(
        &self,
        definition: &Definition,
        slicing: &Slicing,
        slice: &ElementDef,
        ty: Option<&str>,
        item: &Value,
        resources: [&Value; 2],
    ) -> Fit {
        if slicing.discriminator.is_empty() {
            return Fit::Unknown;
        }
        // Whether a value conforms to a profile, when the profile is known.
        let conforms = |url: &str, value: &Value| {
            let profile = self.profiles?.get(url)?;
            Some(self.conforms(profile, value, value, resources))
        };
        let mut fit = Fit::Yes;
        for discriminator in &slicing.discriminator {
            match discriminate(definition, discriminator, slice, ty, item, &conforms) {
                Fit::No => return Fit::No,
                Fit::Unknown => fit = Fit::Unknown,
                Fit::Yes => {}
            }
        }
        fit
    }
}

/// Whether a value is in a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Yes,
    No,
    Unknown,
}

impl Fit {
    fn from(holds: bool) -> Fit {
        if holds { Fit::Yes } else { Fit::No }
    }
}

/// Whether `item` (of type `ty` when known) is in `slice` of `definition` by `discriminator`.
/// `conforms(url, value)` tells whether a value conforms to the profile at `url`, or None
/// when that profile is not known.
fn discriminate(
    definition: &Definition,
    discriminator: &Discriminator,
    slice: &ElementDef,
    ty: Option<&str>,
    item: &Value,
    conforms: &dyn Fn(&str, &Value) -> Option<bool>,
) -> Fit {
    let path = discriminator.path.as_str();
    if path.contains('(') {
        return Fit::Unknown;
    }
    let steps: Vec<&str> = match path.strip_prefix("$this") {
        Some("") => Vec::new(),
        Some(rest) => rest.trim_start_matches('.').split('.').collect(),
        None => path.split('.').collect(),
    };
    let values = values_at(item, &steps);
    match discriminator.kind.as_str() {
        "value" | "pattern" => match expected_at(definition, slice, &steps) {
            Some(Expected::Fixed(fixed)) => Fit::from(values.iter().any(|v| **v == fixed)),
            Some(Expected::Pattern(pattern)) => {
                Fit::from(values.iter().any(|v| matches_pattern(v, &pattern)))
            }
            None => Fit::Unknown,
        },
        "exists" => match element_at(definition, slice, &steps) {
            Some(element) if element.max == "0" => Fit::from(values.is_empty()),
            Some(element) if element.min > 0 => Fit::from(!values.is_empty()),
            _ => Fit::Unknown,
        },
        "type" => {
            let Some(element) = element_at(definition, slice, &steps) else {
                return Fit::Unknown;
            };
            // The type of the value itself is known from its member's name; below it, only
            // a resource's is.
            let actual = match (steps.is_empty(), values.as_slice()) {
                (true, _) => ty,
                (false, []) => return Fit::No,
                (false, [value]) => value["resourceType"].as_str(),
                (false, _) => None,
            };
            let Some(actual) = actual else {
                return Fit::Unknown;
            };
            let resource = !steps.is_empty();
            Fit::from(
                element
                    .types
                    .iter()
                    .any(|t| t.code == actual || (resource && t.code == "Resource")),
            )
        }
        "profile" => {
            let Some(element) = element_at(definition, slice, &steps) else {
                return Fit::Unknown;
            };
            let mut urls = element.types.iter().flat_map(|t| &t.profile).peekable();
            if urls.peek().is_none() {
                // The slice names no profile there: this discriminator does not tell.
                return Fit::Yes;
            }
            let [value] = values.as_slice() else {
                return if values.is_empty() {
                    Fit::No
                } else {
                    Fit::Unknown
                };
            };
            let mut fit = Fit::No;
            for url in urls {
                match conforms(url, value) {
                    Some(true) => return Fit::Yes,
                    Some(false) => {}
                    None => fit = Fit::Unknown,
                }
            }
            fit
        }
        _ => Fit::Unknown,
    }
}

/// The values at `steps` below `item`, arrays flattened.
fn values_at<'v>(item: &'v Value, steps: &[&str]) -> Vec<&'v Value> {
    let mut values = vec![item];
    for step in steps {
        let mut next = Vec::new();
        for value in values {
            match value.get(step) {
                Some(Value::Array(items)) => next.extend(items),
                Some(found) => next.push(found),
                None => {}
            }
        }
        values = next;
    }
    values
}

/// The element of the snapshot at `steps` below `slice`, if the snapshot details it. Below a
/// sliced element, the snapshot may detail a step only in the slices (bp's
/// `component:SystolicBP.code.coding:SBPCode.code`): the first slice that does is taken.
fn element_at<'d>(
    definition: &'d Definition,
    slice: &'d ElementDef,
    steps: &[&str],
) -> Option<&'d ElementDef> {
    let mut element = slice;
    for step in steps {
        let below = |parent: &ElementDef| definition.element(&format!("{}.{step}", parent.key()));
        element = below(element).or_else(|| definition.slices(element.key()).find_map(below))?;
    }
    Some(element)
}

/// What a slice expects of the values at a discriminator's path.
enum Expected {
    Fixed(Value),
    Pattern(Value),
}

impl Expected {
    fn of(element: &ElementDef) -> Option<Expected> {
        match (&element.fixed, &element.pattern) {
            (Some(fixed), _) => Some(Expected::Fixed(fixed.clone())),
            (None, Some(pattern)) => Some(Expected::Pattern(pattern.clone())),
            (None, None) => None,
        }
    }

    /// What it expects at `steps` below (a one-item array stands for its item).
    fn inside(self, steps: &[&str]) -> Option<Expected> {
        let (mut value, fixed) = match self {
            Expected::Fixed(value) => (value, true),
            Expected::Pattern(value) => (value, false),
        };
        for step in steps {
            value = match value.get(step)? {
                Value::Array(items) if items.len() == 1 => items[0].clone(),
                found => found.clone(),
            };
        }
        Some(if fixed {
            Expected::Fixed(value)
        } else {
            Expected::Pattern(value)
        })
    }
}

/// The fixed or pattern value `slice` sets at `steps` below it: on the element there, or
/// inside the fixed or pattern value of an element on the way. The `url` of an extension
/// slice is the canonical url of the extension's profile (its snapshot seldom repeats it).
fn expected_at(definition: &Definition, slice: &ElementDef, steps: &[&str]) -> Option<Expected> {
    let mut parent = slice;
    for n in 0..=steps.len() {
        let Some(element) = element_at(definition, slice, &steps[..n]) else {
            return match steps[n - 1..] {
                ["url"] => extension_url(parent),
                _ => None,
            };
        };
        if let Some(expected) = Expected::of(element) {
            return expected.inside(&steps[n..]);
        }
        parent = element;
    }
    None
}

/// The canonical url (without version) of the profile of an Extension element.
fn extension_url(element: &ElementDef) -> Option<Expected> {
    let profile = element
        .types
        .iter()
        .find(|t| t.code == "Extension")?
        .profile
        .first()?;
    let url = profile.split('|').next().unwrap_or(profile);
    Some(Expected::Fixed(Value::String(url.to_string())))
}
