//! What one evaluation may cost: [`Limits`] set by its caller, spent through a [`Budget`].
//!
//! Invariant: every operation whose cost grows with its input spends from the budget before
//! (or, for a bounded amount, right after) doing the work, so an evaluation stops with
//! [`EvalError::Exceeded`] after at most `steps` units of work and never holds more than
//! `steps` items beyond what one step over the resource makes. A step is one node of the
//! expression evaluated, one item made, one value compared, or 64 bytes of text read, hashed,
//! matched or written.

use super::eval::EvalError;
use super::parser::MAX_DEPTH;
use std::cell::Cell;
use std::rc::Rc;

/// The limits of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How deeply the evaluation may recurse: one level per node of the expression's tree,
    /// so any parsed expression (at most [`MAX_DEPTH`] deep) fits the default.
    pub depth: usize,
    /// The work it may do, in steps (see the module's documentation).
    pub steps: usize,
    /// The longest string it may make, in bytes.
    pub text: usize,
}

impl Limits {
    /// The limits every caller gets unless it says otherwise. Ten million steps is well under
    /// a second of work in a release build (about ten seconds in a debug build), and 16 times what the costliest evaluation of an R4 invariant on
    /// an official example takes (`dom-3`, which runs `%resource.descendants()` four times for
    /// each contained resource: 630,000 steps on a List with contained resources); on
    /// Synthea's resources no evaluation takes more than 80,000, and no search parameter's
    /// 20,000.
    pub const DEFAULT: Limits = Limits {
        depth: MAX_DEPTH,
        steps: 10_000_000,
        text: 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The bytes of text one step pays for.
const BYTES_PER_STEP: usize = 64;

/// What is left of the [`Limits`] of one evaluation, or of several that share them (a clone
/// is the same budget: a SQL on FHIR view spends one budget on all the paths it evaluates on
/// one resource). Not shared between threads.
#[derive(Debug, Clone)]
pub struct Budget(Rc<Spending>);

#[derive(Debug)]
struct Spending {
    limits: Limits,
    spent: Cell<usize>,
    depth: Cell<usize>,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget(Rc::new(Spending {
            limits,
            spent: Cell::new(0),
            depth: Cell::new(0),
        }))
    }

    /// The steps spent so far.
    pub fn spent(&self) -> usize {
        self.0.spent.get()
    }

    /// Spends `steps`; an error once more than the limit is spent.
    pub fn spend(&self, steps: usize) -> Result<(), EvalError> {
        let spent = self.0.spent.get().saturating_add(steps);
        self.0.spent.set(spent);
        if spent > self.0.limits.steps {
            return Err(EvalError::Exceeded(format!(
                "the evaluation needs more than {} steps",
                self.0.limits.steps
            )));
        }
        Ok(())
    }

    /// Spends what reading (copying, hashing, comparing, matching) `bytes` of text costs.
    pub fn read(&self, bytes: usize) -> Result<(), EvalError> {
        self.spend(1 + bytes / BYTES_PER_STEP)
    }

    /// Checks, before it is made, a string of `bytes` the evaluation would make, and spends
    /// what writing it costs.
    pub fn write(&self, bytes: usize) -> Result<(), EvalError> {
        if bytes > self.0.limits.text {
            return Err(EvalError::Exceeded(format!(
                "the evaluation would make a string of {bytes} bytes; at most {} are allowed",
                self.0.limits.text
            )));
        }
        self.read(bytes)
    }

    /// Starts evaluating one node, a level deeper than its parent: a step, and an error when
    /// that is deeper than allowed. [`Budget::leave`] when done.
    pub fn enter(&self) -> Result<(), EvalError> {
        self.spend(1)?;
        let depth = self.0.depth.get();
        if depth >= self.0.limits.depth {
            return Err(EvalError::Exceeded(format!(
                "the evaluation nests deeper than {}",
                self.0.limits.depth
            )));
        }
        self.0.depth.set(depth + 1);
        Ok(())
    }

    /// Ends what [`Budget::enter`] started.
    pub fn leave(&self) {
        self.0.depth.set(self.0.depth.get() - 1);
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Limits::DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_past_the_limit_is_an_error_that_stays() {
        let budget = Budget::new(Limits {
            steps: 10,
            ..Limits::DEFAULT
        });
        budget.spend(4).unwrap();
        budget.read(5 * 64).unwrap();
        assert_eq!(budget.spent(), 10);
        assert!(matches!(budget.spend(1), Err(EvalError::Exceeded(_))));
        assert!(budget.spend(0).is_err(), "once spent, always spent");
        assert!(matches!(
            Budget::default().write(2 * 1024 * 1024),
            Err(EvalError::Exceeded(_))
        ));
    }

    #[test]
    fn depth_is_counted_while_inside() {
        let budget = Budget::new(Limits {
            depth: 2,
            ..Limits::DEFAULT
        });
        budget.enter().unwrap();
        budget.enter().unwrap();
        assert!(matches!(budget.enter(), Err(EvalError::Exceeded(_))));
        budget.leave();
        budget.enter().unwrap();
        assert_eq!(budget.spent(), 4);
    }

    #[test]
    fn clones_spend_the_same_budget() {
        let budget = Budget::new(Limits {
            steps: 10,
            ..Limits::DEFAULT
        });
        let shared = budget.clone();
        budget.spend(6).unwrap();
        assert!(shared.spend(5).is_err());
        assert_eq!(budget.spent(), 11);
    }
}
