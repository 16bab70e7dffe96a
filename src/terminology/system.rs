//! Code systems: what the terminology knows of one ([`SystemInfo`]), the interface every
//! source of concepts offers ([`CodeSource`]: the shipped content in memory, a loaded release
//! in its redb file), and the in-memory source ([`MemorySystem`]).

use super::TerminologyError;
use super::concept::Concept;
use std::collections::{HashMap, HashSet, VecDeque};

/// How much of a code system the terminology holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Every code of the system: a code that is not here is not a code of the system.
    Complete,
    /// A part (a subset, a fragment, or nothing but the name): a code that is not here may
    /// still be a code of the system.
    Partial,
}

/// What the terminology knows about a code system as a whole.
#[derive(Debug, Clone)]
pub struct SystemInfo {
    pub url: String,
    pub name: Option<String>,
    pub title: Option<String>,
    pub version: Option<String>,
    pub content: Content,
    /// Whether every is-a relationship between the concepts held is known: true for complete
    /// code systems (a flat one has none) and a loaded SNOMED CT release, false for subsets
    /// and for LOINC, whose hierarchy is not loaded. Subsumption is decided only when true.
    pub hierarchy: bool,
    /// The codes of the properties the held concepts carry (a filter on another property is
    /// undecided).
    pub properties: Vec<String>,
    /// Whether `a` and `A` are different codes. When false, codes are matched ignoring ASCII
    /// case and reported as the system writes them.
    pub case_sensitive: bool,
    /// What is held of the system, for messages: "the SNOMED CT Global Patient Set and the
    /// Synthea codes (29,540 concepts)".
    pub holding: String,
    /// The licence statement that goes with the content (the SNOMED CT Global Patient Set's).
    pub copyright: Option<String>,
}

impl SystemInfo {
    /// The system's name for people: its title, else its name, else its URL.
    pub fn label(&self) -> &str {
        self.title
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or(&self.url)
    }
}

/// A source of the concepts of one code system.
///
/// Invariant: `concept(c)` is Some exactly for the codes `each_concept` visits, and
/// `children(p)` holds `c` exactly when `concept(c)` lists `p` among its parents.
pub trait CodeSource: Send + Sync {
    fn info(&self) -> &SystemInfo;
    /// The concept of `code`, if the source holds it.
    fn concept(&self, code: &str) -> Result<Option<Concept>, TerminologyError>;
    /// The codes of the direct parents of `code` (none when it is not held).
    fn parents(&self, code: &str) -> Result<Vec<String>, TerminologyError> {
        Ok(self.concept(code)?.map(|c| c.parents).unwrap_or_default())
    }
    /// The codes of the concepts whose parent `code` is.
    fn children(&self, code: &str) -> Result<Vec<String>, TerminologyError>;
    /// How many concepts the source holds.
    fn concept_count(&self) -> usize;
    /// Visits every concept held until `visit` returns false.
    fn each_concept(&self, visit: &mut dyn FnMut(&Concept) -> bool)
    -> Result<(), TerminologyError>;
}

/// Whether `code` is `ancestor` or a descendant of it: a walk up the parents of `code`.
pub fn is_a(source: &dyn CodeSource, code: &str, ancestor: &str) -> Result<bool, TerminologyError> {
    let same = |a: &str, b: &str| {
        if source.info().case_sensitive {
            a == b
        } else {
            a.eq_ignore_ascii_case(b)
        }
    };
    if same(code, ancestor) {
        return Ok(true);
    }
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([code.to_string()]);
    while let Some(next) = queue.pop_front() {
        for parent in source.parents(&next)? {
            if same(&parent, ancestor) {
                return Ok(true);
            }
            if seen.insert(parent.clone()) {
                queue.push_back(parent);
            }
        }
    }
    Ok(false)
}

/// The codes of the descendants of `code` (not `code` itself), breadth first, at most
/// `limit`: Err(TooCostly) past it.
pub fn descendants(
    source: &dyn CodeSource,
    code: &str,
    limit: usize,
) -> Result<Vec<String>, TerminologyError> {
    let mut seen = HashSet::from([code.to_string()]);
    let mut out = Vec::new();
    let mut queue = VecDeque::from([code.to_string()]);
    while let Some(next) = queue.pop_front() {
        for child in source.children(&next)? {
            if seen.insert(child.clone()) {
                if out.len() == limit {
                    return Err(TerminologyError::TooCostly(format!(
                        "{code} of {} has more than {limit} descendants",
                        source.info().url
                    )));
                }
                out.push(child.clone());
                queue.push_back(child);
            }
        }
    }
    Ok(out)
}

/// A code system held in memory: the shipped content.
pub struct MemorySystem {
    info: SystemInfo,
    concepts: Vec<Concept>,
    /// Code (ASCII lower case when the system is not case-sensitive) to position.
    index: HashMap<String, u32>,
    /// Position to the positions of its children.
    children: Vec<Vec<u32>>,
}

impl MemorySystem {
    /// Holds `concepts` (a repeated code keeps its first concept). Parents that are not
    /// among the concepts are kept in the concept but have no children here.
    pub fn new(info: SystemInfo, concepts: Vec<Concept>) -> MemorySystem {
        let mut system = MemorySystem {
            index: HashMap::with_capacity(concepts.len()),
            children: Vec::new(),
            concepts: Vec::with_capacity(concepts.len()),
            info,
        };
        for concept in concepts {
            let key = system.key(&concept.code).into_owned();
            if !system.index.contains_key(&key) {
                system.index.insert(key, system.concepts.len() as u32);
                system.concepts.push(concept);
            }
        }
        let properties: std::collections::BTreeSet<&str> = system
            .concepts
            .iter()
            .flat_map(|c| c.properties.iter().map(|p| p.code.as_str()))
            .collect();
        system.info.properties = properties.into_iter().map(Into::into).collect();
        system.children = vec![Vec::new(); system.concepts.len()];
        for (position, concept) in system.concepts.iter().enumerate() {
            for parent in &concept.parents {
                if let Some(&parent) = system.index.get(system.key(parent).as_ref()) {
                    system.children[parent as usize].push(position as u32);
                }
            }
        }
        system
    }

    fn key<'a>(&self, code: &'a str) -> std::borrow::Cow<'a, str> {
        if self.info.case_sensitive {
            code.into()
        } else {
            code.to_ascii_lowercase().into()
        }
    }

    /// The concept of `code`, borrowed.
    pub fn get(&self, code: &str) -> Option<&Concept> {
        let position = *self.index.get(self.key(code).as_ref())?;
        Some(&self.concepts[position as usize])
    }
}

impl CodeSource for MemorySystem {
    fn info(&self) -> &SystemInfo {
        &self.info
    }

    fn concept(&self, code: &str) -> Result<Option<Concept>, TerminologyError> {
        Ok(self.get(code).cloned())
    }

    fn parents(&self, code: &str) -> Result<Vec<String>, TerminologyError> {
        Ok(self
            .get(code)
            .map(|c| c.parents.clone())
            .unwrap_or_default())
    }

    fn children(&self, code: &str) -> Result<Vec<String>, TerminologyError> {
        let Some(&position) = self.index.get(self.key(code).as_ref()) else {
            return Ok(Vec::new());
        };
        Ok(self.children[position as usize]
            .iter()
            .map(|&child| self.concepts[child as usize].code.clone())
            .collect())
    }

    fn concept_count(&self) -> usize {
        self.concepts.len()
    }

    fn each_concept(
        &self,
        visit: &mut dyn FnMut(&Concept) -> bool,
    ) -> Result<(), TerminologyError> {
        for concept in &self.concepts {
            if !visit(concept) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small hierarchical system: root > (a > (a1, a2), b > a2).
    pub fn tree() -> MemorySystem {
        let concept = |code: &str, parents: &[&str]| {
            let mut concept = Concept::new(code, Some(format!("Concept {code}")));
            concept.parents = parents.iter().map(|p| p.to_string()).collect();
            concept
        };
        MemorySystem::new(
            SystemInfo {
                url: "http://example.org/tree".into(),
                name: Some("Tree".into()),
                title: None,
                version: None,
                content: Content::Complete,
                hierarchy: true,
                properties: Vec::new(),
                case_sensitive: false,
                holding: "all of it".into(),
                copyright: None,
            },
            vec![
                concept("root", &[]),
                concept("a", &["root"]),
                concept("b", &["root"]),
                concept("a1", &["a"]),
                concept("a2", &["a", "b"]),
                concept("a1", &["b"]),
            ],
        )
    }

    #[test]
    fn subsumption_walks_every_parent() {
        let tree = tree();
        assert!(is_a(&tree, "a2", "b").unwrap());
        assert!(is_a(&tree, "a2", "root").unwrap());
        assert!(is_a(&tree, "a1", "a1").unwrap());
        assert!(is_a(&tree, "A2", "ROOT").unwrap());
        assert!(
            !is_a(&tree, "a1", "b").unwrap(),
            "the repeated a1 is ignored"
        );
        assert!(!is_a(&tree, "root", "a").unwrap());
        assert!(!is_a(&tree, "missing", "root").unwrap());
    }

    #[test]
    fn descendants_are_each_listed_once_and_bounded() {
        let tree = tree();
        assert_eq!(
            descendants(&tree, "root", 10).unwrap(),
            ["a", "b", "a1", "a2"]
        );
        assert!(matches!(
            descendants(&tree, "root", 3),
            Err(TerminologyError::TooCostly(_))
        ));
        assert!(descendants(&tree, "a1", 10).unwrap().is_empty());
    }

    #[test]
    fn a_case_insensitive_system_finds_codes_in_any_case() {
        let tree = tree();
        assert_eq!(tree.get("A2").unwrap().code, "a2");
        assert_eq!(tree.children("ROOT").unwrap(), ["a", "b"]);
        assert_eq!(tree.concept_count(), 5);
    }
}
