//! Unit tests of the session: the protocol without a network.

use super::*;
use envoy_types::pb::google::protobuf::Any;

const T0: SystemTime = SystemTime::UNIX_EPOCH;

fn res(type_url: &str, name: &str, content: &str) -> Resource {
    Resource::new(
        name,
        Any {
            type_url: type_url.to_owned(),
            value: content.as_bytes().to_vec(),
        },
    )
}

fn sotw(type_url: &str, names: &[&str], nonce: &str, error: Option<&str>) -> Incoming {
    Incoming {
        type_url: type_url.to_owned(),
        nonce: nonce.to_owned(),
        names: NameChange::Replace(names.iter().map(|n| (*n).to_owned()).collect()),
        initial_versions: Vec::new(),
        error: error.map(|e| (3, e.to_owned())),
    }
}

fn names(out: &Outgoing) -> Vec<&str> {
    out.resources.iter().map(|r| r.name()).collect()
}

/// A state-of-the-world session subscribed to routes `r1` with everything ACKed.
fn routes_session(snap: &Snapshot) -> Session {
    let mut s = Session::new(Protocol::StateOfTheWorld, 1, T0);
    let out = s
        .on_request(sotw(type_url::ROUTE, &["r1"], "", None), snap, T0)
        .unwrap();
    assert!(s
        .on_request(sotw(type_url::ROUTE, &["r1"], &out.nonce, None), snap, T0)
        .is_none());
    assert!(s.next_push(snap, T0).is_none());
    s
}

#[test]
fn sotw_cannot_remove_a_named_resource_so_sends_nothing() {
    let snap = Snapshot::new().with(res(type_url::ROUTE, "r1", "a"));
    let mut s = routes_session(&snap);
    assert!(s.next_push(&Snapshot::new(), T0).is_none());
}

#[test]
fn a_nacked_version_is_not_resent_but_going_back_is() {
    let good = Snapshot::new().with(res(type_url::ROUTE, "r1", "good"));
    let bad = Snapshot::new().with(res(type_url::ROUTE, "r1", "bad"));
    let mut s = routes_session(&good);
    let out = s.next_push(&bad, T0).unwrap();
    assert!(s
        .on_request(
            sotw(type_url::ROUTE, &["r1"], &out.nonce, Some("no")),
            &bad,
            T0
        )
        .is_none());
    assert!(s.next_push(&bad, T0).is_none(), "no resend loop");
    // Envoy still runs "good", but the session cannot know that "good" is what it holds:
    // going back sends it again, which Envoy accepts.
    let back = s.next_push(&good, T0).unwrap();
    assert_eq!(names(&back), ["r1"]);
    let status = s.status();
    let nack = status.types[type_url::ROUTE].last_nack.as_ref().unwrap();
    assert_eq!((nack.error.as_str(), nack.code), ("no", 3));
}

#[test]
fn nothing_moves_while_a_response_is_in_flight() {
    let one = Snapshot::new().with(res(type_url::ROUTE, "r1", "1"));
    let two = Snapshot::new().with(res(type_url::ROUTE, "r1", "2"));
    let three = Snapshot::new().with(res(type_url::ROUTE, "r1", "3"));
    let mut s = routes_session(&one);
    let out = s.next_push(&two, T0).unwrap();
    assert!(s.next_push(&three, T0).is_none());
    // The ACK lets the latest snapshot through, skipping nothing and repeating nothing.
    assert!(s
        .on_request(sotw(type_url::ROUTE, &["r1"], &out.nonce, None), &three, T0)
        .is_none());
    let next = s.next_push(&three, T0).unwrap();
    assert_eq!(
        next.resources[0].version(),
        three.resources(type_url::ROUTE)["r1"].version()
    );
    assert_ne!(next.nonce, out.nonce);
}

#[test]
fn sotw_wildcard_responses_carry_the_whole_set_including_clusters_not_yet_removed() {
    let old = Snapshot::new()
        .with(res(type_url::CLUSTER, "c1", "x"))
        .with(res(type_url::CLUSTER, "c2", "x"));
    let new = Snapshot::new()
        .with(res(type_url::CLUSTER, "c2", "x"))
        .with(res(type_url::CLUSTER, "c3", "x"));
    let mut s = Session::new(Protocol::StateOfTheWorld, 1, T0);
    let first = s
        .on_request(sotw(type_url::CLUSTER, &[], "", None), &old, T0)
        .unwrap();
    assert_eq!(first.version, old.version(type_url::CLUSTER));
    s.on_request(sotw(type_url::CLUSTER, &[], &first.nonce, None), &old, T0);
    let add = s.next_push(&new, T0).unwrap();
    assert_eq!(names(&add), ["c1", "c2", "c3"]);
    s.on_request(sotw(type_url::CLUSTER, &[], &add.nonce, None), &new, T0);
    let remove = s.next_push(&new, T0).unwrap();
    assert_eq!(names(&remove), ["c2", "c3"]);
    assert_eq!(
        remove.version,
        new.version(type_url::CLUSTER),
        "same set, same version"
    );
}

#[test]
fn types_never_asked_for_are_never_pushed() {
    let snap = Snapshot::new()
        .with(res(type_url::CLUSTER, "c1", "x"))
        .with(res(type_url::SECRET, "s1", "x"));
    let mut s = Session::new(Protocol::Delta, 1, T0);
    assert!(s.next_push(&snap, T0).is_none());
}

#[test]
fn removals_wait_while_envoy_serves_a_refused_configuration() {
    // Routes r1 point at c1; the next snapshot moves them to c2 and drops c1, and Envoy
    // refuses the new routes: it keeps routing to c1, so c1 must stay.
    let old = Snapshot::new()
        .with(res(type_url::CLUSTER, "c1", "x"))
        .with(res(type_url::ROUTE, "r1", "to c1"));
    let new = Snapshot::new()
        .with(res(type_url::CLUSTER, "c2", "x"))
        .with(res(type_url::ROUTE, "r1", "to c2"));
    let mut s = Session::new(Protocol::StateOfTheWorld, 1, T0);
    let cds = s
        .on_request(sotw(type_url::CLUSTER, &[], "", None), &old, T0)
        .unwrap();
    s.on_request(sotw(type_url::CLUSTER, &[], &cds.nonce, None), &old, T0);
    let rds = s
        .on_request(sotw(type_url::ROUTE, &["r1"], "", None), &old, T0)
        .unwrap();
    s.on_request(sotw(type_url::ROUTE, &["r1"], &rds.nonce, None), &old, T0);

    let add = s.next_push(&new, T0).unwrap();
    assert_eq!(names(&add), ["c1", "c2"]);
    s.on_request(sotw(type_url::CLUSTER, &[], &add.nonce, None), &new, T0);
    let routes = s.next_push(&new, T0).unwrap();
    assert_eq!(routes.type_url, type_url::ROUTE);
    s.on_request(
        sotw(type_url::ROUTE, &["r1"], &routes.nonce, Some("refused")),
        &new,
        T0,
    );
    assert!(
        s.next_push(&new, T0).is_none(),
        "c1 stays while r1 is refused"
    );

    // A fixed snapshot is accepted: now c1 can go.
    let fixed = Snapshot::new()
        .with(res(type_url::CLUSTER, "c2", "x"))
        .with(res(type_url::ROUTE, "r1", "to c2, fixed"));
    let routes = s.next_push(&fixed, T0).unwrap();
    s.on_request(
        sotw(type_url::ROUTE, &["r1"], &routes.nonce, None),
        &fixed,
        T0,
    );
    let remove = s.next_push(&fixed, T0).unwrap();
    assert_eq!(names(&remove), ["c2"]);
}
