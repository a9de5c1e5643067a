//! Proto3 JSON of the emitted resources, in the shape of Envoy's `/config_dump`.
//!
//! envoy-types has neither JSON support nor reflection, so something has to say which field
//! is which. Writing a JSON builder per message next to the proto builders would state every
//! field twice and let the two drift. Instead the renderer reads the **encoded bytes** of a
//! resource (the same bytes that are packed into the `Any`, hashed into the version and sent
//! to Envoy) with a small table, [`table::fields`], that gives the number, proto name and
//! kind of every field the back end sets. So the JSON shows exactly what is on the wire:
//!
//! - proto3 JSON omits default values, and proto3 encoding does not write them, so that rule
//!   comes for free; fields of a `oneof` and wrapper messages are written when set, and shown.
//! - Names are the proto field names in snake_case, as `config_dump` prints them; enums print
//!   their proto names (from prost's `as_str_name`); wrappers (`BoolValue`, `UInt32Value`)
//!   print their plain value; `Duration` prints as `"3s"` or `"0.250s"`; an `Any` prints its
//!   `@type` and the fields of the message inside.
//! - Keys are written in sorted order.
//! - A field the table does not know is printed as `"[N]": "unknown field"` (and an unknown
//!   `Any` type as `"[unknown type]"`) rather than dropped; the tests render every feature
//!   and fail on such markers, so the table cannot fall behind the emitter unnoticed.
//! - There is one renderer, and it writes text: two-space indented JSON, the bytes
//!   `serde_json::to_writer_pretty` writes for the same document. [`write_config_dump_json`]
//!   writes a resource to its writer as it reads it, so a route configuration of 200,000
//!   routes never exists as JSON values in memory; the long lists of a large dump (a table's
//!   routes, the virtual hosts, the clusters) are rendered a wave at a time on all cores, each
//!   element at the depth it is written at, and written in order. [`to_config_dump_json`] and
//!   [`any_to_json`] read the same text back into a `Value`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

use envoy_types::pb::google::protobuf::Any;
use serde_json::{json, Value};

use super::{PackedResources, PackedSet, Resources, TypeFilter};

mod table;

use table::{fields, Card, Field, Kind};

/// The resources as Envoy's `/config_dump?include_eds` would print them once it has accepted
/// them: `{"configs": [...]}` with one `*ConfigDump` per type (clusters, endpoints, listeners,
/// routes), each resource with its `version_info`. `filter` keeps one type only.
pub fn to_config_dump_json(res: &Resources, filter: Option<TypeFilter>) -> Value {
    let sets = |t: TypeFilter| {
        res.packed(t.type_url())
            .expect("every type of a filter is one the back end produces")
    };
    let mut s = Sink::detached();
    config_dump(&mut s, &sets, filter, Some(AHEAD));
    read_back(&s.buf)
}

/// [`to_config_dump_json`] of the same resources, packed ([`super::emit_packed`]), written
/// to `out` as `serde_json::to_writer_pretty` writes that value, byte for byte, without
/// building it.
pub fn write_config_dump_json(
    res: &PackedResources,
    filter: Option<TypeFilter>,
    out: impl Write,
) -> serde_json::Result<()> {
    write_dump(res, filter, out, Some(AHEAD))
}

/// [`write_config_dump_json`], rendering ahead as `ahead` says (`None`: on this thread).
fn write_dump(
    res: &PackedResources,
    filter: Option<TypeFilter>,
    mut out: impl Write,
    ahead: Option<Ahead>,
) -> serde_json::Result<()> {
    let sets = |t: TypeFilter| res.packed(t);
    let mut s = Sink {
        buf: Vec::with_capacity(2 * SPILL),
        out: Some(&mut out),
        err: None,
    };
    config_dump(&mut s, &sets, filter, ahead);
    s.drain();
    match s.err {
        Some(e) => Err(serde_json::Error::io(e)),
        None => Ok(()),
    }
}

/// One packed resource (or any packed message this back end emits) as proto3 JSON, with its
/// `@type`.
pub fn any_to_json(any: &Any) -> Value {
    let mut s = Sink::detached();
    encoded(&mut s, &Encoded::any(any), 0, None);
    read_back(&s.buf)
}

/// The text the renderer wrote, as a value. The renderer writes valid JSON (strings from
/// the wire are read as UTF-8 with replacement characters, numbers are finite), so this
/// gives `Null` only if that ever stopped being so, which the tests would show.
fn read_back(text: &[u8]) -> Value {
    serde_json::from_slice(text).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------
// The dump.

/// The dump; every object's keys are written in sorted order.
fn config_dump<'a>(
    s: &mut Sink<'_>,
    sets: &dyn Fn(TypeFilter) -> PackedSet<'a>,
    filter: Option<TypeFilter>,
    ahead: Option<Ahead>,
) {
    let wanted = |t: TypeFilter| filter.is_none_or(|f| f == t);
    s.buf.push(b'{');
    key(&mut s.buf, true, 1, "configs");
    s.buf.push(b'[');
    let mut first = true;
    let mut dump = |s: &mut Sink<'_>,
                    type_url: &str,
                    version: Option<&str>,
                    list: &str,
                    items: &dyn Fn(&mut Sink<'_>)| {
        if !first {
            s.buf.push(b',');
        }
        first = false;
        newline(&mut s.buf, 2);
        s.buf.push(b'{');
        key(&mut s.buf, true, 3, "@type");
        string(&mut s.buf, type_url);
        // Every key in this file starts with a lowercase letter, after `@`.
        key(&mut s.buf, false, 3, list);
        items(s);
        if let Some(v) = version {
            key(&mut s.buf, false, 3, "version_info");
            string(&mut s.buf, v);
        }
        newline(&mut s.buf, 2);
        s.buf.push(b'}');
    };
    if wanted(TypeFilter::Cluster) {
        let set = sets(TypeFilter::Cluster);
        dump(
            s,
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            Some(set.version),
            "dynamic_active_clusters",
            &|s| entries(s, &set, "cluster", ahead),
        );
    }
    if wanted(TypeFilter::Endpoint) {
        let set = sets(TypeFilter::Endpoint);
        dump(
            s,
            "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
            None,
            "dynamic_endpoint_configs",
            &|s| entries(s, &set, "endpoint_config", ahead),
        );
    }
    if wanted(TypeFilter::Listener) {
        let set = sets(TypeFilter::Listener);
        dump(
            s,
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            Some(set.version),
            "dynamic_listeners",
            &|s| {
                list(
                    s,
                    &set.resources,
                    3,
                    ahead,
                    resource_weight,
                    &|s, &(name, version, packed), at, ahead| {
                        // {"active_state": {"listener": ..., "version_info": ...}, "name": ...}
                        s.buf.push(b'{');
                        key(&mut s.buf, true, at + 1, "active_state");
                        s.buf.push(b'{');
                        key(&mut s.buf, true, at + 2, "listener");
                        encoded(s, &Encoded::any(packed), at + 2, ahead);
                        key(&mut s.buf, false, at + 2, "version_info");
                        string(&mut s.buf, version);
                        newline(&mut s.buf, at + 1);
                        s.buf.push(b'}');
                        key(&mut s.buf, false, at + 1, "name");
                        string(&mut s.buf, name);
                        newline(&mut s.buf, at);
                        s.buf.push(b'}');
                    },
                )
            },
        );
    }
    if wanted(TypeFilter::Route) {
        let set = sets(TypeFilter::Route);
        dump(
            s,
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            None,
            "dynamic_route_configs",
            &|s| entries(s, &set, "route_config", ahead),
        );
    }
    let secrets = sets(TypeFilter::Secret);
    if wanted(TypeFilter::Secret) && (filter.is_some() || !secrets.resources.is_empty()) {
        dump(
            s,
            "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
            None,
            "dynamic_active_secrets",
            &|s| {
                list(
                    s,
                    &secrets.resources,
                    3,
                    None,
                    resource_weight,
                    &|s, &(name, version, packed), at, _| {
                        // As Envoy's admin prints them: private keys redacted. Secrets are few
                        // and small, so each is read back as a value to edit.
                        let mut secret = any_to_json(packed);
                        if let Some(key) = secret.pointer_mut("/tls_certificate/private_key") {
                            *key = json!({"inline_bytes": crate::base64::encode(b"[redacted]")});
                        }
                        s.buf.push(b'{');
                        key(&mut s.buf, true, at + 1, "name");
                        string(&mut s.buf, name);
                        key(&mut s.buf, false, at + 1, "secret");
                        value(&mut s.buf, &secret, at + 1);
                        key(&mut s.buf, false, at + 1, "version_info");
                        string(&mut s.buf, version);
                        newline(&mut s.buf, at);
                        s.buf.push(b'}');
                    },
                )
            },
        );
    }
    if !first {
        newline(&mut s.buf, 1);
    }
    s.buf.push(b']');
    newline(&mut s.buf, 0);
    s.buf.push(b'}');
}

/// One `{<kind>: resource, version_info}` entry per resource.
fn entries(s: &mut Sink<'_>, set: &PackedSet<'_>, kind: &str, ahead: Option<Ahead>) {
    list(
        s,
        &set.resources,
        3,
        ahead,
        resource_weight,
        &|s, &(_, version, packed), at, ahead| {
            s.buf.push(b'{');
            key(&mut s.buf, true, at + 1, kind);
            encoded(s, &Encoded::any(packed), at + 1, ahead);
            key(&mut s.buf, false, at + 1, "version_info");
            string(&mut s.buf, version);
            newline(&mut s.buf, at);
            s.buf.push(b'}');
        },
    );
}

fn resource_weight(r: &(&str, &str, &Any)) -> usize {
    r.2.value.len()
}

// ---------------------------------------------------------------------------------------
// The writer.

/// Where the text goes: a buffer, drained into the writer whenever it holds [`SPILL`] bytes
/// at the end of a list's element (a run rendered ahead has no writer: its buffer is the
/// run's text). The first error of the writer is kept; nothing is written after it.
struct Sink<'w> {
    buf: Vec<u8>,
    out: Option<&'w mut dyn Write>,
    err: Option<std::io::Error>,
}

const SPILL: usize = 1 << 16;

impl Sink<'_> {
    fn detached() -> Sink<'static> {
        Sink {
            buf: Vec::new(),
            out: None,
            err: None,
        }
    }

    fn spill(&mut self) {
        if self.buf.len() >= SPILL {
            self.drain();
        }
    }

    fn drain(&mut self) {
        if let Some(out) = &mut self.out {
            if self.err.is_none() {
                if let Err(e) = out.write_all(&self.buf) {
                    self.err = Some(e);
                }
            }
            self.buf.clear();
        }
    }

    /// Text rendered elsewhere, next.
    fn put(&mut self, text: &[u8]) {
        if self.out.is_some() && text.len() >= SPILL {
            self.drain();
            if let (Some(out), None) = (&mut self.out, &self.err) {
                if let Err(e) = out.write_all(text) {
                    self.err = Some(e);
                }
            }
        } else {
            self.buf.extend_from_slice(text);
            self.spill();
        }
    }
}

/// When a list is rendered ahead on all cores: a list whose elements' encodings add up to
/// `min` bytes or more, a wave of elements of about `wave` bytes at a time (an element as
/// large as a wave is written in place, its own lists rendered ahead in turn). A wave's
/// text, about five times its encoding, is what rendering ahead holds beyond writing in
/// place.
#[derive(Clone, Copy, Debug)]
struct Ahead {
    min: usize,
    wave: usize,
}

const AHEAD: Ahead = Ahead {
    min: 1 << 16,
    wave: 1 << 19,
};

/// Renders one element of a list at the depth given, rendering ahead as the last argument
/// says.
type Item<'f, T> = dyn Fn(&mut Sink<'_>, &T, usize, Option<Ahead>) + Sync + 'f;

/// A list at depth `at` (its elements at `at + 1`), as the pretty printer writes it.
fn list<T: Sync>(
    s: &mut Sink<'_>,
    items: &[T],
    at: usize,
    ahead: Option<Ahead>,
    weight: fn(&T) -> usize,
    item: &Item<'_, T>,
) {
    if items.is_empty() {
        s.buf.extend_from_slice(b"[]");
        return;
    }
    s.buf.push(b'[');
    let one = |s: &mut Sink<'_>, i: usize, t: &T, ahead: Option<Ahead>| {
        if i > 0 {
            s.buf.push(b',');
        }
        newline(&mut s.buf, at + 1);
        item(s, t, at + 1, ahead);
    };
    let ahead = ahead.filter(|a| {
        crate::par::threads() > 1
            && items.len() > 1
            && items.iter().map(weight).sum::<usize>() >= a.min
    });
    match ahead {
        None => {
            for (i, t) in items.iter().enumerate() {
                one(s, i, t, None);
                s.spill();
            }
        }
        Some(a) => {
            let mut i = 0;
            while i < items.len() {
                if weight(&items[i]) >= a.wave {
                    one(s, i, &items[i], Some(a));
                    s.spill();
                    i += 1;
                    continue;
                }
                let start = i;
                let mut w = 0;
                while i < items.len() && w < a.wave && weight(&items[i]) < a.wave {
                    w += weight(&items[i]);
                    i += 1;
                }
                let wave = &items[start..i];
                let run_len = wave.len().div_ceil(2 * crate::par::threads());
                let texts = crate::par::runs_at(wave, run_len, |k, run| {
                    let mut r = Sink::detached();
                    for (j, t) in run.iter().enumerate() {
                        one(&mut r, start + k + j, t, None);
                    }
                    r.buf
                });
                for text in &texts {
                    s.put(text);
                }
            }
        }
    }
    newline(&mut s.buf, at);
    s.buf.push(b']');
}

/// An object's key at depth `at`: the comma after the entry before, the line, the key.
fn key(buf: &mut Vec<u8>, first: bool, at: usize, k: &str) {
    if !first {
        buf.push(b',');
    }
    newline(buf, at);
    string(buf, k);
    buf.extend_from_slice(b": ");
}

fn newline(buf: &mut Vec<u8>, at: usize) {
    buf.push(b'\n');
    buf.resize(buf.len() + 2 * at, b' ');
}

/// A JSON string as serde_json escapes it: `"` and `\`, and the control characters
/// (`\b \t \n \f \r` by name, the others as `\u00XX`); everything else as it is.
fn string(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// The bytes to escape.
    const ESCAPED: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 0x20 {
            t[b] = true;
            b += 1;
        }
        t[b'"' as usize] = true;
        t[b'\\' as usize] = true;
        t
    };
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !ESCAPED[usize::from(b)] {
            continue;
        }
        buf.extend_from_slice(&bytes[from..i]);
        from = i + 1;
        let named: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\x08' => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\x0c' => b"\\f",
            b'\r' => b"\\r",
            _ => &[],
        };
        if named.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(named);
        }
    }
    buf.extend_from_slice(&bytes[from..]);
    buf.push(b'"');
}

/// A value at depth `at`.
fn value(buf: &mut Vec<u8>, v: &Value, at: usize) {
    match v {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Bool(true) => buf.extend_from_slice(b"true"),
        Value::Bool(false) => buf.extend_from_slice(b"false"),
        // Into a vector: cannot fail.
        Value::Number(n) => drop(serde_json::to_writer(&mut *buf, n)),
        Value::String(s) => string(buf, s),
        Value::Array(items) if items.is_empty() => buf.extend_from_slice(b"[]"),
        Value::Array(items) => {
            buf.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                newline(buf, at + 1);
                value(buf, item, at + 1);
            }
            newline(buf, at);
            buf.push(b']');
        }
        Value::Object(m) if m.is_empty() => buf.extend_from_slice(b"{}"),
        Value::Object(m) => {
            buf.push(b'{');
            for (i, (k, v)) in m.iter().enumerate() {
                key(buf, i == 0, at + 1, k);
                value(buf, v, at + 1);
            }
            newline(buf, at);
            buf.push(b'}');
        }
    }
}

/// An encoded message at depth `at`. Its fields are written in the table's order, which is
/// their names' (a message with a field the table does not know goes through
/// [`collect_fields`], which sorts the markers in).
fn encoded(s: &mut Sink<'_>, e: &Encoded<'_>, at: usize, ahead: Option<Ahead>) {
    let name: &str = &e.name;
    let type_url = e.type_url.as_deref();
    let Some(wire) = read_fields(e.bytes) else {
        return message_value(s, marker(INVALID, name), at, type_url);
    };
    let table = match name {
        "google.protobuf.Duration" => return message_value(s, duration(&wire), at, type_url),
        "google.protobuf.BoolValue" => {
            return message_value(s, wrapped(&wire, |v| json!(v != 0)), at, type_url)
        }
        "google.protobuf.UInt32Value" => {
            return message_value(s, wrapped(&wire, |v| json!(v as u32)), at, type_url)
        }
        // An `Any` renders as the message inside it, with that message's type.
        "google.protobuf.Any" => {
            let url = wire.iter().find_map(|(n, w)| match (n, w) {
                (1, Wire::Bytes(b)) => Some(String::from_utf8_lossy(b)),
                _ => None,
            });
            let value = wire.iter().find_map(|(n, w)| match (n, w) {
                (2, Wire::Bytes(b)) => Some(*b),
                _ => None,
            });
            let inner = Encoded::packed(url.unwrap_or_default(), value.unwrap_or_default());
            return encoded(s, &inner, at, ahead);
        }
        _ => match fields(name) {
            None => return message_value(s, marker(UNKNOWN_TYPE, name), at, type_url),
            Some(table) => table,
        },
    };
    debug_assert!(
        table.is_sorted_by_key(|f| f.name),
        "{name}: the table's fields are not in name order"
    );
    if wire
        .iter()
        .any(|(n, _)| !table.iter().any(|f| f.number == *n))
    {
        return object(s, &collect_fields(table, wire), at, ahead, type_url);
    }
    s.buf.push(b'{');
    // `@type` sorts before every field name (snake_case).
    let mut first = true;
    if let Some(url) = type_url {
        key(&mut s.buf, true, at + 1, "@type");
        string(&mut s.buf, url);
        first = false;
    }
    for f in table {
        let mut here = wire.iter().filter(|(n, _)| *n == f.number).map(|(_, w)| w);
        match f.card {
            // A later occurrence wins, as when decoding.
            Card::One => {
                let Some(w) = here.next_back() else { continue };
                key(&mut s.buf, first, at + 1, f.name);
                write_wire(s, &f.kind, w, at + 1, ahead);
            }
            Card::Many => {
                let mut items: Vec<Wire<'_>> = Vec::new();
                for w in here {
                    match (&f.kind, w) {
                        // Packed repeated scalars: one length-delimited run of varints.
                        (Kind::U32 | Kind::Bool | Kind::Enum(_), Wire::Bytes(b)) => {
                            let mut r = Reader { buf: b };
                            while let Some(v) = r.varint() {
                                items.push(Wire::Varint(v));
                            }
                        }
                        _ => items.push(*w),
                    }
                }
                if items.is_empty() {
                    continue;
                }
                key(&mut s.buf, first, at + 1, f.name);
                let kind = f.kind;
                list(s, &items, at + 1, ahead, wire_weight, &|s, w, at, ahead| {
                    write_wire(s, &kind, w, at, ahead)
                });
            }
            Card::Map => {
                let mut entries = BTreeMap::new();
                for w in here {
                    if let Wire::Bytes(b) = w {
                        let (k, v) = map_entry(&f.kind, b);
                        entries.insert(k, v);
                    }
                }
                if entries.is_empty() {
                    continue;
                }
                key(&mut s.buf, first, at + 1, f.name);
                write_node(s, &Node::Map(entries), at + 1, ahead);
            }
        }
        first = false;
    }
    if !first {
        newline(&mut s.buf, at);
    }
    s.buf.push(b'}');
}

/// A message whose JSON is a value: a well-known type with a scalar form, or a marker
/// object. Packed, it is an object with its `@type`: the marker's keys after it, or a scalar
/// under `value`, as proto3 JSON says.
fn message_value(s: &mut Sink<'_>, v: Value, at: usize, type_url: Option<&str>) {
    let Some(url) = type_url else {
        return value(&mut s.buf, &v, at);
    };
    let fields: Fields<'_> = match v {
        Value::Object(o) => o
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), Node::Leaf(v)))
            .collect(),
        v => vec![(Cow::Borrowed("value"), Node::Leaf(v))],
    };
    object(s, &fields, at, None, Some(url));
}

/// One field value at depth `at`, as [`node`] reads it.
fn write_wire(s: &mut Sink<'_>, kind: &Kind, w: &Wire<'_>, at: usize, ahead: Option<Ahead>) {
    match (kind, w) {
        (Kind::Str, Wire::Bytes(b)) => string(&mut s.buf, &utf8(b)),
        (Kind::Msg(name), Wire::Bytes(b)) => encoded(
            s,
            &Encoded {
                name: Cow::Borrowed(name),
                bytes: b,
                type_url: None,
            },
            at,
            ahead,
        ),
        (kind, w) => value(&mut s.buf, &leaf(kind, w), at),
    }
}

/// About how much a field value has to render: its encoding's length.
fn wire_weight(w: &Wire<'_>) -> usize {
    match w {
        Wire::Bytes(b) => b.len(),
        _ => 8,
    }
}

/// Text from the wire: as it is when it is UTF-8 (the back end writes nothing else), with
/// replacement characters otherwise.
fn utf8(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// A message's fields at depth `at`, after its `@type` when it has one.
fn object(
    s: &mut Sink<'_>,
    fields: &[(Cow<'_, str>, Node<'_>)],
    at: usize,
    ahead: Option<Ahead>,
    type_url: Option<&str>,
) {
    if fields.is_empty() && type_url.is_none() {
        s.buf.extend_from_slice(b"{}");
        return;
    }
    s.buf.push(b'{');
    if let Some(url) = type_url {
        key(&mut s.buf, true, at + 1, "@type");
        string(&mut s.buf, url);
    }
    for (i, (k, v)) in fields.iter().enumerate() {
        key(&mut s.buf, i == 0 && type_url.is_none(), at + 1, k);
        write_node(s, v, at + 1, ahead);
    }
    newline(&mut s.buf, at);
    s.buf.push(b'}');
}

/// A field's rendering at depth `at`.
fn write_node(s: &mut Sink<'_>, n: &Node<'_>, at: usize, ahead: Option<Ahead>) {
    match n {
        Node::Leaf(v) => value(&mut s.buf, v, at),
        Node::Str(v) => string(&mut s.buf, v),
        Node::Msg(m) => encoded(s, m, at, ahead),
        Node::List(items) => list(s, items, at, ahead, node_weight, &|s, n, at, ahead| {
            write_node(s, n, at, ahead)
        }),
        Node::Map(entries) if entries.is_empty() => s.buf.extend_from_slice(b"{}"),
        Node::Map(entries) => {
            s.buf.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                key(&mut s.buf, i == 0, at + 1, k);
                write_node(s, v, at + 1, ahead);
            }
            newline(&mut s.buf, at);
            s.buf.push(b'}');
        }
    }
}

/// About how much a node has to render: its encoding's length.
fn node_weight(n: &Node<'_>) -> usize {
    match n {
        Node::Msg(m) => m.bytes.len(),
        Node::Str(v) => v.len(),
        _ => 8,
    }
}

// ---------------------------------------------------------------------------------------
// The wire reader.

/// One field value as the wire has it.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A 64-bit value (`double`: the sampling percentages).
    Fixed64(u64),
    /// A fixed 32-bit value: no field this back end emits has one, so only its presence
    /// matters.
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first()?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    /// The next field, or `None` at the end. `Err` on bytes that are not a valid encoding.
    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ()> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint().ok_or(())?;
        let number = u32::try_from(key >> 3).map_err(|_| ())?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint().ok_or(())?),
            1 => {
                let b = self.take(8).ok_or(())?;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().map_err(|_| ())?))
            }
            2 => {
                let len = usize::try_from(self.varint().ok_or(())?).map_err(|_| ())?;
                Wire::Bytes(self.take(len).ok_or(())?)
            }
            5 => {
                self.take(4).ok_or(())?;
                Wire::Fixed
            }
            _ => return Err(()),
        };
        Ok(Some((number, wire)))
    }
}

/// Every field of a message, in wire order. `None` if the bytes are not a valid encoding.
fn read_fields(bytes: &[u8]) -> Option<Vec<(u32, Wire<'_>)>> {
    let mut r = Reader { buf: bytes };
    let mut out = Vec::new();
    while let Some(f) = r.field().ok()? {
        out.push(f);
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Rendering.

const UNKNOWN_FIELD: &str = "unknown field";
const UNKNOWN_TYPE: &str = "[unknown type]";
const INVALID: &str = "[invalid encoding]";

/// An encoded message to render: its full proto name, its bytes, and the type URL it was
/// packed with in an `Any` (rendered as `@type` among its fields).
struct Encoded<'a> {
    name: Cow<'a, str>,
    bytes: &'a [u8],
    type_url: Option<Cow<'a, str>>,
}

impl<'a> Encoded<'a> {
    fn any(any: &'a Any) -> Encoded<'a> {
        Encoded::packed(Cow::Borrowed(&any.type_url), &any.value)
    }

    fn packed(type_url: Cow<'a, str>, bytes: &'a [u8]) -> Encoded<'a> {
        let name = match &type_url {
            Cow::Borrowed(u) => Cow::Borrowed(u.rsplit('/').next().unwrap_or(u)),
            Cow::Owned(u) => Cow::Owned(u.rsplit('/').next().unwrap_or(u).to_owned()),
        };
        Encoded {
            name,
            bytes,
            type_url: Some(type_url),
        }
    }
}

/// One field's rendering, still to be written.
enum Node<'a> {
    Leaf(Value),
    Str(Cow<'a, str>),
    Msg(Encoded<'a>),
    List(Vec<Node<'a>>),
    Map(BTreeMap<String, Node<'a>>),
}

/// A message's fields by name, sorted by name as the renderer writes them (a later
/// occurrence of a singular field or map key wins, as when decoding). A list, not a map:
/// a message has a few fields, and a map's node would be allocated for every message.
fn collect_fields<'a>(table: &'static [Field], wire: Vec<(u32, Wire<'a>)>) -> Fields<'a> {
    let mut out: Fields<'a> = Vec::new();
    // The entry named `name`, made with `new` if there is none.
    fn slot<'a, 'o>(
        out: &'o mut Fields<'a>,
        name: Cow<'static, str>,
        new: impl FnOnce() -> Node<'a>,
    ) -> &'o mut Node<'a> {
        let i = match out.iter().position(|(k, _)| *k == name) {
            Some(i) => i,
            None => {
                out.push((name, new()));
                out.len() - 1
            }
        };
        &mut out[i].1
    }
    for (number, w) in wire {
        let Some(f) = table.iter().find(|f| f.number == number) else {
            let name = Cow::Owned(format!("[{number}]"));
            *slot(&mut out, name, || Node::Leaf(Value::Null)) = Node::Leaf(json!(UNKNOWN_FIELD));
            continue;
        };
        let name = Cow::Borrowed(f.name);
        match f.card {
            Card::One => {
                let value = node(&f.kind, w);
                *slot(&mut out, name, || Node::Leaf(Value::Null)) = value;
            }
            Card::Many => {
                if let Node::List(items) = slot(&mut out, name, || Node::List(Vec::new())) {
                    match (&f.kind, &w) {
                        // Packed repeated scalars: one length-delimited run of varints.
                        (Kind::U32 | Kind::Bool | Kind::Enum(_), Wire::Bytes(b)) => {
                            let mut r = Reader { buf: b };
                            while let Some(v) = r.varint() {
                                items.push(node(&f.kind, Wire::Varint(v)));
                            }
                        }
                        _ => items.push(node(&f.kind, w)),
                    }
                }
            }
            Card::Map => {
                let entries = slot(&mut out, name, || Node::Map(BTreeMap::new()));
                if let (Node::Map(entries), Wire::Bytes(b)) = (entries, &w) {
                    let (k, v) = map_entry(&f.kind, b);
                    entries.insert(k, v);
                }
            }
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A message's fields: names unique, sorted.
type Fields<'a> = Vec<(Cow<'static, str>, Node<'a>)>;

fn marker(key: &str, name: &str) -> Value {
    json!({ key: name })
}

fn map_entry<'a>(kind: &Kind, bytes: &'a [u8]) -> (String, Node<'a>) {
    let mut key = String::new();
    let mut val = Node::Leaf(Value::Null);
    for (n, w) in read_fields(bytes).unwrap_or_default() {
        match (n, &w) {
            (1, Wire::Bytes(b)) => key = String::from_utf8_lossy(b).into_owned(),
            (2, _) => val = node(kind, w),
            _ => {}
        }
    }
    (key, val)
}

fn node<'a>(kind: &Kind, w: Wire<'a>) -> Node<'a> {
    match (kind, w) {
        (Kind::Str, Wire::Bytes(b)) => Node::Str(utf8(b)),
        (Kind::Msg(name), Wire::Bytes(b)) => Node::Msg(Encoded {
            name: Cow::Borrowed(name),
            bytes: b,
            type_url: None,
        }),
        (kind, w) => Node::Leaf(leaf(kind, &w)),
    }
}

fn leaf(kind: &Kind, w: &Wire<'_>) -> Value {
    match (kind, w) {
        (Kind::Bytes, Wire::Bytes(b)) => json!(crate::base64::encode(b)),
        (Kind::Bool, Wire::Varint(v)) => json!(*v != 0),
        (Kind::U32, Wire::Varint(v)) => json!(*v as u32),
        (Kind::Double, Wire::Fixed64(v)) => double(f64::from_bits(*v)),
        (Kind::Enum(names), Wire::Varint(v)) => match names(*v as i32) {
            Some(n) => json!(n),
            None => json!(*v as i32),
        },
        _ => json!(INVALID),
    }
}

/// A `double` as Envoy prints it: a whole number without a fraction (`100`, not `100.0`).
fn double(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// `google.protobuf.Duration` as proto3 JSON: seconds with 0, 3, 6 or 9 fractional digits.
fn duration(wire: &[(u32, Wire<'_>)]) -> Value {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    for (n, w) in wire {
        match (n, w) {
            (1, Wire::Varint(v)) => seconds = *v as i64,
            (2, Wire::Varint(v)) => nanos = *v as i32,
            _ => {}
        }
    }
    let sign = if seconds < 0 || nanos < 0 { "-" } else { "" };
    let (s, n) = (seconds.unsigned_abs(), nanos.unsigned_abs());
    let text = if n == 0 {
        format!("{sign}{s}s")
    } else if n % 1_000_000 == 0 {
        format!("{sign}{s}.{:03}s", n / 1_000_000)
    } else if n % 1_000 == 0 {
        format!("{sign}{s}.{:06}s", n / 1_000)
    } else {
        format!("{sign}{s}.{n:09}s")
    };
    json!(text)
}

/// A wrapper message (`BoolValue`, `UInt32Value`): its field 1, or the default when absent.
fn wrapped(wire: &[(u32, Wire<'_>)], f: impl Fn(u64) -> Value) -> Value {
    let v = wire.iter().find_map(|(n, w)| match (n, w) {
        (1, Wire::Varint(v)) => Some(*v),
        _ => None,
    });
    f(v.unwrap_or(0))
}

/// Every place in `v` where the renderer met something its table does not describe: unknown
/// fields, unknown types, invalid encodings. Empty for everything [`super::emit`] produces.
pub fn unrendered(v: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k.starts_with('[') || v == UNKNOWN_FIELD || v == INVALID {
                        out.push(format!("{path}/{k}"));
                    } else {
                        walk(v, &format!("{path}/{k}"), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// [`write_config_dump_json`] with other waves (`None`: everything on this thread).
#[cfg(test)]
pub(super) fn write_with_waves(
    res: &PackedResources,
    filter: Option<TypeFilter>,
    waves: Option<(usize, usize)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let ahead = waves.map(|(min, wave)| Ahead { min, wave });
    write_dump(res, filter, &mut out, ahead).expect("a vector takes every write");
    out
}

/// A value as the dump's writer writes it, at the top.
#[cfg(test)]
pub(super) fn pretty(v: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    value(&mut buf, v, 0);
    buf
}
