//! The compiler-backed validator: the same checks as `kubectl ambassador lint`, one object at a time, against the watched view.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use ambassador_compiler::context::Context;
use ambassador_compiler::diag::Severity as DiagSeverity;
use ambassador_compiler::front::Options;
use ambassador_compiler::incremental::{Session, ViewChange};
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
///
/// The view is indexed from the incremental session that also feeds the ADS publisher
/// ([`CompilerValidator::follow`]): a change to one Mapping updates the indexes in place, at
/// the cost of the change; reviews wait for that (microseconds), never for a compilation.
pub struct CompilerValidator {
    options: Options,
    reject_conflicts: bool,
    context: RwLock<Context>,
    /// How many times the view was replaced or brought up to date.
    updates: AtomicU64,
}

impl CompilerValidator {
    pub fn new(ambassador_id: impl Into<String>) -> CompilerValidator {
        let options = Options {
            ambassador_id: ambassador_id.into(),
            ..Options::default()
        };
        let context = RwLock::new(Context::default());
        CompilerValidator {
            options,
            reject_conflicts: false,
            context,
            updates: AtomicU64::new(0),
        }
    }

    /// Rejects conflicts with the view, and findings that wait for another object, instead
    /// of warning about them.
    pub fn reject_conflicts(mut self, on: bool) -> CompilerValidator {
        self.reject_conflicts = on;
        self
    }

    /// The options the view must be compiled with (its `ambassador_id`).
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Replaces the view with one compiled from `sources` on its own (tests and benchmarks;
    /// a server follows its session instead).
    pub fn set_view(&self, sources: &Sources) {
        self.replace(Context::build(sources, &self.options));
    }

    /// Brings the view to `session` after an update of it that changed `change`: in place
    /// when only Mappings changed; otherwise indexed again aside, then swapped in.
    pub fn follow(&self, session: &Session, change: &ViewChange) {
        if change.is_full() {
            self.replace(Context::from_session(session));
        } else {
            self.context
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .apply(session, change);
            self.updates.fetch_add(1, Ordering::Release);
        }
    }

    /// How many times the view has changed since the validator was made (for benchmarks
    /// and tests that wait for a change to reach admission).
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Acquire)
    }

    fn replace(&self, ctx: Context) {
        let old = std::mem::replace(
            &mut *self.context.write().unwrap_or_else(|e| e.into_inner()),
            ctx,
        );
        self.updates.fetch_add(1, Ordering::Release);
        // A large view takes a while to free: do it after the lock is released, so that
        // reviews arriving meanwhile are not held up.
        drop(old);
    }

    /// The number of Ambassador resources in the current view.
    pub fn view_size(&self) -> usize {
        self.context.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Validate for CompilerValidator {
    fn validate(&self, object: &serde_json::Value) -> Vec<Finding> {
        let checked = self
            .context
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .check(object, &self.options, self.reject_conflicts);
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
