//! OperationOutcome and the error every layer returns for something a client caused.

use serde_json::{Value, json};
use std::fmt;

/// The `issue.code` values of OperationOutcome that fhirlake uses (FHIR value set
/// `issue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Invalid,
    Structure,
    Required,
    Value,
    /// A rule (a StructureDefinition invariant) does not hold.
    Invariant,
    /// A code is not a code of its system, or not in the value set it is bound to.
    CodeInvalid,
    /// A rule of use that is not about structure (a code that is inactive).
    BusinessRule,
    NotFound,
    Deleted,
    Conflict,
    NotSupported,
    TooLong,
    /// The request would take too much to answer (an expansion of a huge value set).
    TooCostly,
    Processing,
    Exception,
    /// A temporary condition: the same request may succeed later.
    Transient,
    Informational,
    /// No valid credentials: the client has to authenticate (401).
    Login,
    /// The credentials do not allow the request (403).
    Forbidden,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::Invariant => "invariant",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::BusinessRule => "business-rule",
            IssueCode::NotFound => "not-found",
            IssueCode::Deleted => "deleted",
            IssueCode::Conflict => "conflict",
            IssueCode::NotSupported => "not-supported",
            IssueCode::TooLong => "too-long",
            IssueCode::TooCostly => "too-costly",
            IssueCode::Processing => "processing",
            IssueCode::Exception => "exception",
            IssueCode::Transient => "transient",
            IssueCode::Informational => "informational",
            IssueCode::Login => "login",
            IssueCode::Forbidden => "forbidden",
        }
    }
}

/// How serious an OperationOutcome `issue` is (`issue.severity`; fhirlake does not use
/// `fatal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// An error a request caused, with the HTTP status it is answered with. It always reaches the
/// client as an OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirError {
    pub status: u16,
    pub code: IssueCode,
    pub diagnostics: String,
    /// FHIRPath of the element at fault, when there is one.
    pub expression: Option<String>,
    /// Further issues of the OperationOutcome after this one (OperationOutcome `issue`
    /// objects): every finding of a validation, every failing entry of a transaction.
    pub more: Vec<Value>,
}

impl FhirError {
    pub fn new(status: u16, code: IssueCode, diagnostics: impl Into<String>) -> Self {
        FhirError {
            status,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
            more: Vec::new(),
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    pub fn bad_request(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        FhirError::new(400, code, diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        FhirError::new(404, IssueCode::NotFound, diagnostics)
    }

    pub fn not_supported(diagnostics: impl Into<String>) -> Self {
        FhirError::new(501, IssueCode::NotSupported, diagnostics)
    }

    /// 403: the client is known, but its token does not allow what it asked.
    pub fn forbidden(diagnostics: impl Into<String>) -> Self {
        FhirError::new(403, IssueCode::Forbidden, diagnostics)
    }

    pub fn internal(diagnostics: impl Into<String>) -> Self {
        FhirError::new(500, IssueCode::Exception, diagnostics)
    }

    /// Adds further issues to report with this error.
    pub fn with(mut self, issues: impl IntoIterator<Item = Value>) -> Self {
        self.more.extend(issues);
        self
    }

    /// The OperationOutcome that reports this error: its own issue first, then the others.
    pub fn to_outcome(&self) -> Value {
        let first = issue(
            Severity::Error,
            self.code,
            &self.diagnostics,
            self.expression.as_deref(),
        );
        let issues: Vec<Value> = std::iter::once(first)
            .chain(self.more.iter().cloned())
            .collect();
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}

impl fmt::Display for FhirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.diagnostics, self.code.as_str())
    }
}

impl std::error::Error for FhirError {}

/// One `issue` of an OperationOutcome.
pub fn issue(
    severity: Severity,
    code: IssueCode,
    diagnostics: &str,
    expression: Option<&str>,
) -> Value {
    let mut issue = json!({
        "severity": severity.as_str(),
        "code": code.as_str(),
        "diagnostics": diagnostics,
    });
    if let Some(expression) = expression {
        issue["expression"] = json!([expression]);
    }
    issue
}

/// An OperationOutcome with one issue.
pub fn outcome(
    severity: Severity,
    code: IssueCode,
    diagnostics: &str,
    expression: Option<&str>,
) -> Value {
    json!({"resourceType": "OperationOutcome",
        "issue": [issue(severity, code, diagnostics, expression)]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_the_element_at_fault() {
        let error = FhirError::bad_request(IssueCode::Structure, "unknown element 'x'")
            .at("Patient.name[0].x");
        let outcome = error.to_outcome();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["severity"], "error");
        assert_eq!(outcome["issue"][0]["code"], "structure");
        assert_eq!(outcome["issue"][0]["expression"][0], "Patient.name[0].x");
        // A valid OperationOutcome by the typed R4 model.
        fhirlake_model::check_resource(&outcome).unwrap();
    }
}
