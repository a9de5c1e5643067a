//! The compiler-backed validator: the same checks as `kubectl ambassador lint`, one object at a time, against the watched view.

use std::sync::{Arc, RwLock};

use ambassador_compiler::context::Context;
use ambassador_compiler::diag::Severity as DiagSeverity;
use ambassador_compiler::front::Options;
use ambassador_compiler::source::Sources;

use crate::admission::{Finding, Severity, Validate};

/// Validates objects with the compiler against the current view of the cluster. Errors
/// deny; warnings are returned to kubectl; notes (such as an object excluded by
/// `ambassador_id`) are not sent.
///
/// `kubectl apply` sends objects one at a time and the view catches up after each, so an
/// object is judged together with what the view holds, and only findings about the object
/// alone deny. A finding another object can settle (a TLSContext, resolver, Host or Service
/// not seen yet, a canary group whose weights do not add up yet) is a warning saying the
/// object may be waiting for another one; a canary group the view holds members of is
/// weighed whole, as lint weighs it; conflicts with the view (the same route bound to another
/// service, shadowing, a canary that cannot join its group, a duplicate name) are warnings.
/// With `reject_conflicts` these keep lint's severity, and conflicts are errors
/// (`ambassador_compiler::admission::admission_severity`).
pub struct CompilerValidator {
    options: Options,
    reject_conflicts: bool,
    context: RwLock<Arc<Context>>,
}

impl CompilerValidator {
    pub fn new(ambassador_id: impl Into<String>) -> CompilerValidator {
        let options = Options {
            ambassador_id: ambassador_id.into(),
            ..Options::default()
        };
        let context = RwLock::new(Arc::new(Context::build(&Sources::new(), &options)));
        CompilerValidator {
            options,
            reject_conflicts: false,
            context,
        }
    }

    /// Rejects conflicts with the view, and findings that wait for another object, instead
    /// of warning about them.
    pub fn reject_conflicts(mut self, on: bool) -> CompilerValidator {
        self.reject_conflicts = on;
        self
    }

    /// Replaces the view the validator checks against (called when the watched view changes).
    pub fn set_view(&self, sources: &Sources) {
        let ctx = Arc::new(Context::build(sources, &self.options));
        let old = std::mem::replace(
            &mut *self.context.write().unwrap_or_else(|e| e.into_inner()),
            ctx,
        );
        // A large view takes a while to free: do it after the lock is released, so that
        // reviews arriving meanwhile are not held up.
        drop(old);
    }

    /// The compiled view the validator checks against now.
    pub fn context(&self) -> Arc<Context> {
        Arc::clone(&self.context.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The number of Ambassador resources in the current view.
    pub fn view_size(&self) -> usize {
        self.context.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Validate for CompilerValidator {
    fn validate(&self, object: &serde_json::Value) -> Vec<Finding> {
        let ctx = Arc::clone(&self.context.read().unwrap_or_else(|e| e.into_inner()));
        let checked = ctx.check(object, &self.options, self.reject_conflicts);
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
