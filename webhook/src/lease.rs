//! One writer of `status` and Events among the replicas: leader election on a
//! `coordination.k8s.io/v1` Lease, in the shape of client-go's `leaderelection`.
//!
//! kube-rs 5 ships no leader election, so this is written on `Api<Lease>`:
//!
//! - Every [`LeaseOptions::retry_period`] each replica reads the Lease. The holder renews
//!   it (`renewTime`); a replica that is not the holder takes it only when it has no
//!   holder or has not changed for `leaseDurationSeconds`, measured on this replica's
//!   clock from when it saw the record change (as client-go does: no comparison of
//!   clocks between machines). A missing Lease is created.
//! - Every write carries the `resourceVersion` that was read, so of two replicas that
//!   try at once, one gets `409 Conflict` and stays a follower.
//! - A leader may write until [`LeaseOptions::renew_deadline`] after it sent its last
//!   successful renewal, which is shorter than the lease duration others wait for: it
//!   stops writing before anyone else can take over, even when it cannot reach the API
//!   server. A conflict on renewal, or another holder in the record, ends leadership at
//!   once.
//! - [`Elector::stop`] releases the Lease (no holder, `leaseDurationSeconds: 1`), so the
//!   other replica takes over at its next attempt instead of after the lease duration.
//!
//! With the defaults (8 s lease, 5 s renew deadline, 2 s retry period) a replica takes
//! over at most 8 + 2 × 2 = 12 s, plus request latency, after the leader last renewed.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which Lease, who this replica is, and the timing.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// The Lease's namespace: the webhook's own.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// `holderIdentity`: the pod name.
    pub identity: String,
    /// `leaseDurationSeconds` written into the Lease: how long others wait after the
    /// record last changed before they take it.
    pub lease_duration: Duration,
    /// How long after sending its last successful renewal the leader keeps writing.
    /// Shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseOptions {
    /// The defaults: an 8 s lease, a 5 s renew deadline, an attempt every 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseOptions {
        LeaseOptions {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(8),
            renew_deadline: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What the elector publishes.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    /// Counts acquisitions: a new term after every gain of leadership.
    term: u64,
    /// While leading: the instant after which this replica must stop writing.
    until: Option<Instant>,
}

/// Whether this replica may write now. Cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<State>,
    /// The last term [`Leadership::gained`] returned for.
    seen: u64,
}

impl Leadership {
    /// A replica that always writes (no election: one instance, or tests).
    pub fn always() -> Leadership {
        let state = State {
            term: 1,
            until: Some(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)),
        };
        let (_tx, rx) = watch::channel(state);
        Leadership { rx, seen: 1 }
    }

    /// True while this replica holds the Lease and its last renewal is recent enough.
    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }

    /// The current term while leading, else `None`. Two writes under the same term
    /// were made with no other writer in between.
    pub fn term(&self) -> Option<u64> {
        let s = *self.rx.borrow();
        s.until
            .filter(|until| Instant::now() < *until)
            .map(|_| s.term)
    }

    /// Waits until this replica gains leadership it has not been told about yet
    /// (returns at once if it leads in a term not seen yet). Never returns once the
    /// elector has stopped.
    pub async fn gained(&mut self) {
        loop {
            let s = *self.rx.borrow_and_update();
            if s.until.is_some() && s.term != self.seen {
                self.seen = s.term;
                return;
            }
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The running election. Dropping it stops the loop without releasing the Lease (as
/// when the process dies); [`Elector::stop`] releases it.
pub struct Elector {
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Elector {
    /// Stops trying, releases the Lease if this replica holds it, and waits (at most a
    /// few seconds) for that.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts electing. Must be called inside a tokio runtime.
pub fn spawn(client: Client, options: LeaseOptions) -> (Leadership, Elector) {
    let (tx, rx) = watch::channel(State::default());
    let (stop_tx, stop_rx) = oneshot::channel();
    let api: Api<Lease> = Api::namespaced(client, &options.namespace);
    let task = tokio::spawn(run(api, options, tx, async move {
        let _ = stop_rx.await;
    }));
    (
        Leadership { rx, seen: 0 },
        Elector {
            task: Some(task),
            stop: Some(stop_tx),
        },
    )
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// This replica holds the Lease; it may write until `sent + renew_deadline`.
    /// `acquired`: it did not hold it before this attempt.
    Leading { acquired: bool },
    /// Another replica holds it, or won a race for it.
    Follower(Option<String>),
}

/// When the record was last seen to change, by its `resourceVersion`.
#[derive(Default)]
struct Observed {
    version: Option<String>,
    at: Option<Instant>,
}

impl Observed {
    fn see(&mut self, version: Option<String>, now: Instant) {
        if self.version != version || self.at.is_none() {
            self.version = version;
            self.at = Some(now);
        }
    }
}

async fn run(
    api: Api<Lease>,
    options: LeaseOptions,
    tx: watch::Sender<State>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut observed = Observed::default();
    let mut term = 0u64;
    loop {
        let sent = Instant::now();
        let attempt = tokio::time::timeout(
            options.renew_deadline,
            attempt(&api, &options, &mut observed, sent),
        )
        .await;
        let leading = tx
            .borrow()
            .until
            .is_some_and(|until| Instant::now() < until);
        match attempt {
            Ok(Ok(Attempt::Leading { acquired })) => {
                // A new term whenever someone else may have written in between.
                if acquired || !leading {
                    term += 1;
                    tracing::info!(
                        lease = %options.name,
                        identity = %options.identity,
                        "leading: this replica writes status and Events"
                    );
                }
                tx.send_replace(State {
                    term,
                    until: Some(sent + options.renew_deadline),
                });
            }
            Ok(Ok(Attempt::Follower(holder))) => {
                if leading {
                    tracing::warn!(
                        lease = %options.name,
                        holder = holder.as_deref().unwrap_or(""),
                        "lost the lease: this replica stops writing status and Events"
                    );
                }
                tx.send_replace(State { term, until: None });
            }
            // A failed or slow request: leadership, if any, lapses at its deadline.
            Ok(Err(e)) => {
                tracing::warn!(lease = %options.name, error = %e, "lease request failed")
            }
            Err(_) => tracing::warn!(lease = %options.name, "lease request timed out"),
        }
        tokio::select! {
            () = tokio::time::sleep(options.retry_period) => {}
            () = &mut stop => break,
        }
    }
    let held = tx.borrow().until.is_some();
    tx.send_replace(State { term, until: None });
    if held {
        match tokio::time::timeout(options.renew_deadline, release(&api, &options)).await {
            Ok(Ok(())) => tracing::info!(lease = %options.name, "released the lease"),
            Ok(Err(e)) => tracing::warn!(lease = %options.name, error = %e, "releasing the lease"),
            Err(_) => tracing::warn!(lease = %options.name, "releasing the lease timed out"),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// One try: create the Lease, renew it, or take it over when it has expired.
async fn attempt(
    api: &Api<Lease>,
    options: &LeaseOptions,
    observed: &mut Observed,
    sent: Instant,
) -> Result<Attempt, kube::Error> {
    let Some(lease) = api.get_opt(&options.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(options.name.clone()),
                namespace: Some(options.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(options.identity.clone()),
                lease_duration_seconds: Some(seconds(options.lease_duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                observed.see(created.metadata.resource_version, Instant::now());
                Ok(Attempt::Leading { acquired: true })
            }
            // Another replica created it first.
            Err(e) if conflict(&e) => Ok(Attempt::Follower(None)),
            Err(e) => Err(e),
        };
    };
    observed.see(lease.metadata.resource_version.clone(), sent);
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mine = holder.as_deref() == Some(options.identity.as_str());
    if !mine {
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(options.lease_duration);
        let since = observed.at.map(|at| sent.saturating_duration_since(at));
        let expired = holder.is_none() || since.is_some_and(|s| s >= duration);
        if !expired {
            return Ok(Attempt::Follower(holder));
        }
    }
    let mut next = lease.clone();
    let mut new_spec = spec.clone();
    new_spec.holder_identity = Some(options.identity.clone());
    new_spec.lease_duration_seconds = Some(seconds(options.lease_duration));
    new_spec.renew_time = Some(now());
    if !mine {
        new_spec.acquire_time = Some(now());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    next.spec = Some(new_spec);
    // `next` keeps the resourceVersion that was read: optimistic concurrency.
    match api
        .replace(&options.name, &PostParams::default(), &next)
        .await
    {
        Ok(written) => {
            observed.see(written.metadata.resource_version, Instant::now());
            Ok(Attempt::Leading { acquired: !mine })
        }
        Err(e) if conflict(&e) => Ok(Attempt::Follower(holder)),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up if this replica still holds it: no holder, and a one-second
/// duration, so the next attempt of another replica takes it.
async fn release(api: &Api<Lease>, options: &LeaseOptions) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&options.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(options.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    match api
        .replace(&options.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn always_leads_and_reports_its_term_once() {
        let mut l = Leadership::always();
        assert!(l.is_leader());
        assert_eq!(l.term(), Some(1));
        // Term 1 is already seen: `gained` waits forever.
        let waited = tokio::time::timeout(Duration::from_millis(50), l.gained()).await;
        assert!(waited.is_err());
    }

    #[tokio::test]
    async fn leadership_lapses_at_its_deadline_and_new_terms_are_reported() {
        let (tx, rx) = watch::channel(State::default());
        let mut l = Leadership { rx, seen: 0 };
        assert!(!l.is_leader());
        tx.send_replace(State {
            term: 1,
            until: Some(Instant::now() + Duration::from_millis(100)),
        });
        tokio::time::timeout(Duration::from_secs(1), l.gained())
            .await
            .unwrap();
        assert_eq!(l.term(), Some(1));
        tokio::time::sleep(Duration::from_millis(150)).await;
        // No renewal came: this replica stops writing by itself.
        assert!(!l.is_leader());
        tx.send_replace(State {
            term: 2,
            until: Some(Instant::now() + Duration::from_secs(10)),
        });
        tokio::time::timeout(Duration::from_secs(1), l.gained())
            .await
            .unwrap();
        assert_eq!(l.term(), Some(2));
    }

    #[test]
    fn observation_restarts_only_when_the_record_changes() {
        let mut o = Observed::default();
        let t0 = Instant::now();
        o.see(Some("1".into()), t0);
        o.see(Some("1".into()), t0 + Duration::from_secs(3));
        assert_eq!(o.at, Some(t0));
        o.see(Some("2".into()), t0 + Duration::from_secs(4));
        assert_eq!(o.at, Some(t0 + Duration::from_secs(4)));
    }
}
