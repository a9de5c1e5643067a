//! The compiler-backed validator: the same checks as `kubectl ambassador lint`, one object at a time.

use ambassador_compiler::admission::check_object;
use ambassador_compiler::diag::Severity as DiagSeverity;
use ambassador_compiler::front::Options;

use crate::admission::{Finding, Severity, Validate};

/// Validates objects with the compiler. Errors deny; warnings are returned to kubectl;
/// notes (such as an object excluded by `ambassador_id`) are not sent.
#[derive(Debug, Clone)]
pub struct CompilerValidator {
    pub options: Options,
}

impl CompilerValidator {
    pub fn new(ambassador_id: impl Into<String>) -> CompilerValidator {
        CompilerValidator {
            options: Options {
                ambassador_id: ambassador_id.into(),
                ..Options::default()
            },
        }
    }
}

impl Validate for CompilerValidator {
    fn validate(&self, object: &serde_json::Value) -> Vec<Finding> {
        let checked = check_object(object, &self.options);
        checked
            .diagnostics
            .iter()
            .filter_map(|d| {
                let severity = match d.severity {
                    DiagSeverity::Error => Severity::Error,
                    DiagSeverity::Warning => Severity::Warning,
                    DiagSeverity::Info => return None,
                };
                let mut f = Finding {
                    severity,
                    code: d.code.as_str().to_string(),
                    field: d.field.clone(),
                    line: None,
                    column: None,
                    message: match &d.help {
                        Some(help) => format!("{}; {help}", d.message),
                        None => d.message.clone(),
                    },
                };
                if let (Some(span), Some(file)) = (d.span, checked.annotation) {
                    if span.file == file {
                        f = f.at(span.start.line, span.start.column);
                    }
                }
                Some(f)
            })
            .collect()
    }
}
