//! Process metrics in the Prometheus text exposition format (version 0.0.4).
//!
//! Hand-written rather than pulled from a metrics crate: a handful of counters,
//! one histogram and one gauge, all lock-free except the labelled gauge, which
//! others (the cluster view) set rarely.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds. The API server gives up
/// after `timeoutSeconds` (at most 5 in our manifests), so nothing above matters.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How a request to `/validate` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Validated and admitted (possibly with warnings).
    Allowed,
    /// Validated and denied.
    Denied,
    /// Out of scope: admitted without validation.
    Skipped,
    /// The review itself was malformed (HTTP 400).
    Malformed,
    /// Body too large (413), too slow (408), or the validator failed (500).
    Failed,
}

impl RequestVerdict {
    const ALL: [RequestVerdict; 5] = [
        RequestVerdict::Allowed,
        RequestVerdict::Denied,
        RequestVerdict::Skipped,
        RequestVerdict::Malformed,
        RequestVerdict::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            RequestVerdict::Allowed => "allowed",
            RequestVerdict::Denied => "denied",
            RequestVerdict::Skipped => "skipped",
            RequestVerdict::Malformed => "malformed",
            RequestVerdict::Failed => "failed",
        }
    }
}

/// Kinds we label denials with; anything else is counted as `other`, so a
/// client cannot grow the label set without bound.
const DENIAL_KINDS: [&str; 10] = [
    "Service",
    "Mapping",
    "TCPMapping",
    "Host",
    "Module",
    "TLSContext",
    "AuthService",
    "RateLimitService",
    "Listener",
    "other",
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// All metrics of the process. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; 5],
    denials: [AtomicU64; DENIAL_KINDS.len()],
    warnings: AtomicU64,
    latency: Histogram,
    tls_reloads_ok: AtomicU64,
    tls_reloads_failed: AtomicU64,
    tls_handshake_failures: AtomicU64,
    view_size: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one `/validate` request and observes its latency.
    pub fn observe_request(&self, verdict: RequestVerdict, elapsed: Duration) {
        let i = RequestVerdict::ALL
            .iter()
            .position(|v| *v == verdict)
            .unwrap_or(0);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (bucket, bound) in self.latency.buckets.iter().zip(LATENCY_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts one denial of an object of `kind`.
    pub fn observe_denial(&self, kind: &str) {
        let i = DENIAL_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(DENIAL_KINDS.len() - 1);
        self.denials[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts warnings sent back to clients.
    pub fn observe_warnings(&self, n: usize) {
        self.warnings.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts one attempt to reload the serving certificate.
    pub fn observe_tls_reload(&self, ok: bool) {
        let counter = if ok {
            &self.tls_reloads_ok
        } else {
            &self.tls_reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a TLS handshake that failed or timed out.
    pub fn observe_handshake_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets how many objects of `kind` the cluster view currently holds.
    /// Called by the cluster view after each change; the webhook never sets it.
    pub fn set_view_size(&self, kind: &str, objects: u64) {
        let mut sizes = self.view_size.lock().unwrap_or_else(|e| e.into_inner());
        sizes.insert(kind.to_owned(), objects);
    }

    /// Number of `/validate` requests that ended with `verdict` so far.
    pub fn requests(&self, verdict: RequestVerdict) -> u64 {
        let i = RequestVerdict::ALL
            .iter()
            .position(|v| *v == verdict)
            .unwrap_or(0);
        self.requests[i].load(Ordering::Relaxed)
    }

    /// Renders everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP ambassador_webhook_admission_requests_total Admission reviews answered, by verdict.\n\
             # TYPE ambassador_webhook_admission_requests_total counter\n",
        );
        for (verdict, n) in RequestVerdict::ALL.iter().zip(&self.requests) {
            let _ = writeln!(
                out,
                "ambassador_webhook_admission_requests_total{{verdict=\"{}\"}} {}",
                verdict.label(),
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP ambassador_webhook_admission_denials_total Objects denied, by kind.\n\
             # TYPE ambassador_webhook_admission_denials_total counter\n",
        );
        for (kind, n) in DENIAL_KINDS.iter().zip(&self.denials) {
            let _ = writeln!(
                out,
                "ambassador_webhook_admission_denials_total{{kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP ambassador_webhook_admission_warnings_total Warnings returned to clients.\n\
             # TYPE ambassador_webhook_admission_warnings_total counter\n\
             ambassador_webhook_admission_warnings_total {}\n",
            self.warnings.load(Ordering::Relaxed)
        );

        out.push_str(
            "# HELP ambassador_webhook_admission_duration_seconds Time to answer one admission review, body read included.\n\
             # TYPE ambassador_webhook_admission_duration_seconds histogram\n",
        );
        for (bound, n) in LATENCY_BUCKETS.iter().zip(&self.latency.buckets) {
            let _ = writeln!(
                out,
                "ambassador_webhook_admission_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let count = self.latency.count.load(Ordering::Relaxed);
        let sum = self.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = write!(
            out,
            "ambassador_webhook_admission_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             ambassador_webhook_admission_duration_seconds_sum {sum}\n\
             ambassador_webhook_admission_duration_seconds_count {count}\n"
        );

        let _ = write!(
            out,
            "# HELP ambassador_webhook_tls_reloads_total Serving certificate reloads, by result.\n\
             # TYPE ambassador_webhook_tls_reloads_total counter\n\
             ambassador_webhook_tls_reloads_total{{result=\"ok\"}} {}\n\
             ambassador_webhook_tls_reloads_total{{result=\"error\"}} {}\n\
             # HELP ambassador_webhook_tls_handshake_failures_total TLS handshakes that failed or timed out.\n\
             # TYPE ambassador_webhook_tls_handshake_failures_total counter\n\
             ambassador_webhook_tls_handshake_failures_total {}\n",
            self.tls_reloads_ok.load(Ordering::Relaxed),
            self.tls_reloads_failed.load(Ordering::Relaxed),
            self.tls_handshake_failures.load(Ordering::Relaxed),
        );

        out.push_str(
            "# HELP ambassador_watched_objects Objects held by the cluster view, by kind.\n\
             # TYPE ambassador_watched_objects gauge\n",
        );
        let sizes = self.view_size.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, n) in sizes.iter() {
            let _ = writeln!(
                out,
                "ambassador_watched_objects{{kind=\"{}\"}} {n}",
                escape_label(kind)
            );
        }
        out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_equals_count() {
        let m = Metrics::new();
        m.observe_request(RequestVerdict::Allowed, Duration::from_micros(300));
        m.observe_request(RequestVerdict::Denied, Duration::from_millis(30));
        m.observe_request(RequestVerdict::Denied, Duration::from_secs(9));
        let text = m.render();
        assert!(
            text.contains("duration_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("duration_seconds_bucket{le=\"0.05\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("duration_seconds_bucket{le=\"5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("duration_seconds_count 3\n"), "{text}");
        assert!(
            text.contains("requests_total{verdict=\"denied\"} 2\n"),
            "{text}"
        );
        assert_eq!(m.requests(RequestVerdict::Denied), 2);
    }

    #[test]
    fn unknown_denial_kinds_fold_into_other_and_view_labels_are_escaped() {
        let m = Metrics::new();
        m.observe_denial("Mapping");
        m.observe_denial("SomethingNew");
        m.set_view_size("Mapping", 12);
        m.set_view_size("we\"ird", 1);
        m.set_view_size("Mapping", 13);
        let text = m.render();
        assert!(
            text.contains("denials_total{kind=\"Mapping\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("denials_total{kind=\"other\"} 1\n"), "{text}");
        assert!(
            text.contains("ambassador_watched_objects{kind=\"Mapping\"} 13\n"),
            "{text}"
        );
        assert!(
            text.contains("ambassador_watched_objects{kind=\"we\\\"ird\"} 1\n"),
            "{text}"
        );
    }
}
