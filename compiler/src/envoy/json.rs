//! Proto3 JSON of the emitted resources, in the shape of Envoy's `/config_dump`.
//!
//! envoy-types has neither JSON support nor reflection, so something has to say which field
//! is which. Writing a JSON builder per message next to the proto builders would state every
//! field twice and let the two drift. Instead the renderer reads the **encoded bytes** of a
//! resource (the same bytes that are packed into the `Any`, hashed into the version and sent
//! to Envoy) with a small table, [`fields`], that gives the number, proto name and kind of
//! every field the back end sets. So the JSON shows exactly what is on the wire:
//!
//! - proto3 JSON omits default values, and proto3 encoding does not write them, so that rule
//!   comes for free; fields of a `oneof` and wrapper messages are written when set, and shown.
//! - Names are the proto field names in snake_case, as `config_dump` prints them; enums print
//!   their proto names (from prost's `as_str_name`); wrappers (`BoolValue`, `UInt32Value`)
//!   print their plain value; `Duration` prints as `"3s"` or `"0.250s"`; an `Any` prints its
//!   `@type` and the fields of the message inside.
//! - Keys are inserted in sorted order, so the output is the same whether or not serde_json's
//!   `preserve_order` feature is on somewhere in the build.
//! - A field the table does not know is printed as `"[N]": "unknown field"` (and an unknown
//!   `Any` type as `"[unknown type]"`) rather than dropped; the tests render every feature
//!   and fail on such markers, so the table cannot fall behind the emitter unnoticed.
//! - Rendering is a [`Serialize`] implementation over the encoded bytes, not a tree: written
//!   with [`write_config_dump_json`], a resource goes to the writer field by field, and a
//!   route configuration of 200,000 routes never exists as JSON values in memory.
//!   [`to_config_dump_json`] and [`any_to_json`] collect the same rendering into a `Value`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
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
    to_value(&ConfigDump {
        sets: &sets,
        filter,
    })
}

/// [`to_config_dump_json`] of the same resources, packed ([`super::emit_packed`]), written
/// to `out` as `serde_json::to_writer_pretty` writes that value, byte for byte, without
/// building it.
pub fn write_config_dump_json(
    res: &PackedResources,
    filter: Option<TypeFilter>,
    out: impl std::io::Write,
) -> serde_json::Result<()> {
    let sets = |t: TypeFilter| res.packed(t);
    let mut ser = serde_json::Serializer::with_formatter(out, Pretty::default());
    ConfigDump {
        sets: &sets,
        filter,
    }
    .serialize(&mut ser)
}

/// One packed resource (or any packed message this back end emits) as proto3 JSON, with its
/// `@type`.
pub fn any_to_json(any: &Any) -> Value {
    to_value(&Encoded::any(any))
}

fn to_value(v: &impl Serialize) -> Value {
    // Infallible here: every key is a string and no value is a float that JSON lacks
    // (`double` renders a non-finite value as `null`).
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// serde_json's `PrettyFormatter` (two spaces), writing each line break and its indentation
/// in one piece: the pretty printer writes the indentation one level at a time, a dozen
/// writes of two bytes at the start of every line of a route.
#[derive(Default)]
pub(super) struct Pretty {
    indent: usize,
    has_value: bool,
}

impl Pretty {
    fn line<W: ?Sized + std::io::Write>(&self, out: &mut W) -> std::io::Result<()> {
        const SPACES: &[u8] = b"\n                                                                ";
        let mut spaces = 2 * self.indent;
        let first = spaces.min(SPACES.len() - 1);
        out.write_all(&SPACES[..1 + first])?;
        spaces -= first;
        while spaces > 0 {
            let more = spaces.min(SPACES.len() - 1);
            out.write_all(&SPACES[1..1 + more])?;
            spaces -= more;
        }
        Ok(())
    }

    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        out: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.indent += 1;
        self.has_value = false;
        out.write_all(bracket)
    }

    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        out: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.indent -= 1;
        if self.has_value {
            self.line(out)?;
        }
        out.write_all(bracket)
    }

    fn item<W: ?Sized + std::io::Write>(
        &mut self,
        out: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            out.write_all(b",")?;
        }
        self.line(out)
    }
}

impl serde_json::ser::Formatter for Pretty {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        self.open(out, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        self.close(out, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        out: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(out, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        self.open(out, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        self.close(out, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        out: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(out, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        out: &mut W,
    ) -> std::io::Result<()> {
        out.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// The dump; every object's keys are written in sorted order, so the output is the same
/// whether or not serde_json's `preserve_order` feature is on somewhere in the build.
struct ConfigDump<'a> {
    /// The resources of a type.
    sets: &'a dyn Fn(TypeFilter) -> PackedSet<'a>,
    filter: Option<TypeFilter>,
}

impl Serialize for ConfigDump<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("configs", &Configs(self))?;
        m.end()
    }
}

struct Configs<'a, 'b>(&'b ConfigDump<'a>);

impl Serialize for Configs<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ConfigDump { sets, filter } = *self.0;
        let wanted = |t: TypeFilter| filter.is_none_or(|f| f == t);
        let mut seq = s.serialize_seq(None)?;
        if wanted(TypeFilter::Cluster) {
            let set = sets(TypeFilter::Cluster);
            seq.serialize_element(&Dump {
                type_url: "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                version: Some(set.version),
                key: "dynamic_active_clusters",
                items: Entries(&set, "cluster"),
            })?;
        }
        if wanted(TypeFilter::Endpoint) {
            seq.serialize_element(&Dump {
                type_url: "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                version: None,
                key: "dynamic_endpoint_configs",
                items: Entries(&sets(TypeFilter::Endpoint), "endpoint_config"),
            })?;
        }
        if wanted(TypeFilter::Listener) {
            let set = sets(TypeFilter::Listener);
            seq.serialize_element(&Dump {
                type_url: "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                version: Some(set.version),
                key: "dynamic_listeners",
                items: Listeners(&set),
            })?;
        }
        if wanted(TypeFilter::Route) {
            seq.serialize_element(&Dump {
                type_url: "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                version: None,
                key: "dynamic_route_configs",
                items: Entries(&sets(TypeFilter::Route), "route_config"),
            })?;
        }
        let secrets = sets(TypeFilter::Secret);
        if wanted(TypeFilter::Secret) && (filter.is_some() || !secrets.resources.is_empty()) {
            seq.serialize_element(&Dump {
                type_url: "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                version: None,
                key: "dynamic_active_secrets",
                items: Secrets(&secrets),
            })?;
        }
        seq.end()
    }
}

/// One `*ConfigDump`: `@type`, its list, and the version of the whole type when it has one.
struct Dump<'a, I> {
    type_url: &'static str,
    version: Option<&'a str>,
    key: &'static str,
    items: I,
}

impl<I: Serialize> Serialize for Dump<'_, I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2 + usize::from(self.version.is_some())))?;
        m.serialize_entry("@type", self.type_url)?;
        // Every key in this file starts with a lowercase letter, after `@`.
        m.serialize_entry(self.key, &self.items)?;
        if let Some(v) = self.version {
            m.serialize_entry("version_info", v)?;
        }
        m.end()
    }
}

/// One `{<kind>: resource, version_info}` entry per resource.
struct Entries<'a>(&'a PackedSet<'a>, &'static str);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Entries(set, kind) = *self;
        s.collect_seq(set.resources.iter().map(|&(_, version, packed)| {
            Sorted([
                (kind, Entry::Msg(Encoded::any(packed))),
                ("version_info", Entry::Str(version)),
            ])
        }))
    }
}

struct Listeners<'a>(&'a PackedSet<'a>);

impl Serialize for Listeners<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.resources.iter().map(|&(name, version, packed)| {
            Sorted([
                (
                    "active_state",
                    Entry::Pair(Box::new(Sorted([
                        ("listener", Entry::Msg(Encoded::any(packed))),
                        ("version_info", Entry::Str(version)),
                    ]))),
                ),
                ("name", Entry::Str(name)),
            ])
        }))
    }
}

struct Secrets<'a>(&'a PackedSet<'a>);

impl Serialize for Secrets<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.resources.iter().map(|&(name, version, packed)| {
            // As Envoy's admin prints them: private keys redacted. Secrets are few and
            // small, so this one is built as a value to edit.
            let mut secret = any_to_json(packed);
            if let Some(key) = secret.pointer_mut("/tls_certificate/private_key") {
                *key = json!({"inline_bytes": crate::base64::encode(b"[redacted]")});
            }
            Sorted([
                ("name", Entry::Str(name)),
                ("secret", Entry::Value(secret)),
                ("version_info", Entry::Str(version)),
            ])
        }))
    }
}

/// An object of fixed keys, given in sorted order.
struct Sorted<'a, const N: usize>([(&'a str, Entry<'a>); N]);

enum Entry<'a> {
    Str(&'a str),
    Msg(Encoded<'a>),
    Value(Value),
    Pair(Box<Sorted<'a, 2>>),
}

impl<const N: usize> Serialize for Sorted<'_, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        debug_assert!(self.0.is_sorted_by_key(|(k, _)| *k));
        let mut m = s.serialize_map(Some(N))?;
        for (k, v) in &self.0 {
            match v {
                Entry::Str(v) => m.serialize_entry(k, v)?,
                Entry::Msg(v) => m.serialize_entry(k, v)?,
                Entry::Value(v) => m.serialize_entry(k, v)?,
                Entry::Pair(v) => m.serialize_entry(k, v)?,
            }
        }
        m.end()
    }
}

// ---------------------------------------------------------------------------------------
// The wire reader.

/// One field value as the wire has it.
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

/// What a message renders as.
enum Body<'a> {
    /// A well-known type with a scalar JSON form, or a marker object.
    Value(Value),
    /// The fields, by name (sorted).
    Fields(Fields<'a>),
}

/// One field's rendering, still to be written.
enum Node<'a> {
    Leaf(Value),
    Str(Cow<'a, str>),
    Msg(Encoded<'a>),
    List(Vec<Node<'a>>),
    Map(BTreeMap<String, Node<'a>>),
}

impl Serialize for Encoded<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let name: &str = &self.name;
        let body = match read_fields(self.bytes) {
            None => Body::Value(marker(INVALID, name)),
            Some(wire) => match name {
                "google.protobuf.Duration" => Body::Value(duration(&wire)),
                "google.protobuf.BoolValue" => Body::Value(wrapped(&wire, |v| json!(v != 0))),
                "google.protobuf.UInt32Value" => Body::Value(wrapped(&wire, |v| json!(v as u32))),
                "google.protobuf.Any" => {
                    let url = wire.iter().find_map(|(n, w)| match (n, w) {
                        (1, Wire::Bytes(b)) => Some(String::from_utf8_lossy(b)),
                        _ => None,
                    });
                    let value = wire.iter().find_map(|(n, w)| match (n, w) {
                        (2, Wire::Bytes(b)) => Some(*b),
                        _ => None,
                    });
                    return Encoded::packed(url.unwrap_or_default(), value.unwrap_or_default())
                        .serialize(s);
                }
                _ => match fields(name) {
                    None => Body::Value(marker(UNKNOWN_TYPE, name)),
                    Some(table) => Body::Fields(collect_fields(table, wire)),
                },
            },
        };
        let Some(type_url) = &self.type_url else {
            return match body {
                Body::Value(v) => v.serialize(s),
                Body::Fields(f) => s.collect_map(f.iter().map(|(k, v)| (k, v))),
            };
        };
        // `@type` sorts before every other key: they are snake_case names, `[N]` for an
        // unknown field, the marker keys and `value`.
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("@type", type_url)?;
        match body {
            Body::Value(Value::Object(o)) => {
                for (k, v) in &o {
                    m.serialize_entry(k, v)?;
                }
            }
            // A well-known type with a scalar JSON form goes under `value`, as proto3 JSON
            // says.
            Body::Value(v) => m.serialize_entry("value", &v)?,
            Body::Fields(f) => {
                for (k, v) in &f {
                    m.serialize_entry(k, v)?;
                }
            }
        }
        m.end()
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Leaf(v) => v.serialize(s),
            Node::Str(v) => s.serialize_str(v),
            Node::Msg(m) => m.serialize(s),
            Node::List(items) => s.collect_seq(items),
            Node::Map(entries) => s.collect_map(entries),
        }
    }
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
        (Kind::Str, Wire::Bytes(b)) => Node::Str(String::from_utf8_lossy(b)),
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
