//! Envoy resources built from parts that were encoded before: what [`crate::incremental`]
//! needs to re-emit one route without building the others again.
//!
//! Protobuf encodes a repeated message field as the concatenation of its elements, each a
//! key, a length and the element's bytes, and prost writes fields in their declaration
//! order. A VirtualHost declares `name`, `domains` and then `routes` first, and a
//! RouteConfiguration `name` and then `virtual_hosts`: so a virtual host's encoding is the
//! encoding of its name and domains, then each route's, then the rest; and a route
//! configuration's is its name, then each virtual host's. The bytes are the same as
//! encoding the whole message at once (`tests.rs` in `incremental` compares them).

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, VirtualHost as EnvoyVirtualHost,
};
use envoy_types::pb::google::protobuf::Any;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::{Message, Name};

use super::route::Variants;
use super::XdsResource;
use crate::fnv::Fnv1a;
use crate::ir::{Cluster, Cors, Ir, Route, SecurityModel, VirtualHost};

/// A resource ready for the wire: name, version and the packed message.
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    pub name: String,
    /// A hash of the encoding (or of its parts), in hex.
    pub version: String,
    pub any: Any,
}

impl Packed {
    /// Encodes `message`; the version is FNV-1a of the bytes, as [`super::emit`] gives.
    pub fn of<T: XdsResource>(message: &T) -> Packed {
        let value = message.encode_deterministic();
        Packed {
            name: message.resource_name().to_owned(),
            version: version_of(&value),
            any: Any {
                type_url: T::type_url(),
                value,
            },
        }
    }
}

/// The version [`super::emit`] gives a resource: FNV-1a 64 of its encoding, in hex.
fn version_of(encoding: &[u8]) -> String {
    let mut h = Fnv1a::new();
    h.write(encoding);
    h.hex()
}

/// One IR route encoded as the elements (key, length, body) of a virtual host's `routes` it
/// becomes (several for a canary group), and a hash of those bytes.
#[derive(Clone, Debug)]
pub struct EncodedRoute {
    pub bytes: Vec<u8>,
    pub hash: u64,
}

/// Encodes a route once for listeners of one kind (`variants`), to be placed in any number
/// of their virtual hosts.
pub fn encode_route(r: &Route, variants: Variants) -> EncodedRoute {
    let mut bytes = Vec::new();
    append_route(r, variants, &mut bytes, &mut Vec::new());
    let mut h = Fnv1a::new();
    h.write(&bytes);
    EncodedRoute { bytes, hash: h.0 }
}

/// Appends each Envoy route of the IR route to `out` as an element of the virtual host's
/// `routes`; `scratch` is a buffer to reuse.
fn append_route(r: &Route, variants: Variants, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    for route in super::route::route_variants(r, variants) {
        scratch.clear();
        super::route::encode_route(&route, scratch);
        encode_key(3, WireType::LengthDelimited, out);
        encode_varint(scratch.len() as u64, out);
        out.extend_from_slice(scratch);
    }
}

/// A virtual host's encoding around its routes.
#[derive(Clone, Debug)]
pub struct VirtualHostShell {
    /// Name and domains.
    head: Vec<u8>,
    /// Every field after `routes`.
    tail: Vec<u8>,
    hash: u64,
}

impl VirtualHostShell {
    /// The shell of `vh`; `vh.routes` is not read.
    pub fn new(vh: &VirtualHost, module_cors: Option<&Cors>) -> VirtualHostShell {
        let whole = super::route::virtual_host_with(vh, module_cors);
        let head = EnvoyVirtualHost {
            name: whole.name.clone(),
            domains: whole.domains.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let tail = EnvoyVirtualHost {
            name: String::new(),
            domains: Vec::new(),
            ..whole
        }
        .encode_to_vec();
        let mut h = Fnv1a::new();
        h.write(&head);
        h.write(&[0xff]);
        h.write(&tail);
        VirtualHostShell {
            head,
            tail,
            hash: h.0,
        }
    }

    /// The length of the virtual host's encoding when its routes take `routes_len` bytes
    /// (the sum of [`EncodedRoute::element_len`]).
    fn len(&self, routes_len: usize) -> usize {
        self.head.len() + self.tail.len() + routes_len
    }

    /// Appends the virtual host with `routes` (taking `routes_len` bytes) to `out` as field
    /// `field` of the enclosing message, and feeds its hash.
    fn write<'r>(
        &self,
        routes: impl Iterator<Item = &'r EncodedRoute>,
        routes_len: usize,
        field: u32,
        out: &mut Vec<u8>,
        h: &mut Fnv1a,
    ) {
        let len = self.len(routes_len);
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        out.extend_from_slice(&self.head);
        h.write_u64(self.hash);
        for r in routes {
            out.extend_from_slice(&r.bytes);
            h.write_u64(r.hash);
        }
        out.extend_from_slice(&self.tail);
    }
}

/// Bytes of one length-delimited element of a small field number: key, length, body.
fn element_len(body: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(body as u64) + body
}

impl EncodedRoute {
    /// The bytes this route takes inside a virtual host.
    pub fn element_len(&self) -> usize {
        self.bytes.len()
    }
}

/// A RouteConfiguration named `name` holding `vhosts` (each a shell, its routes and the
/// bytes they take, in the order given), packed. The version hashes the parts' hashes, not
/// the bytes. The buffer is allocated once, at its final size.
pub fn route_configuration<'a, R>(
    name: &str,
    vhosts: impl Iterator<Item = (&'a VirtualHostShell, R, usize)> + Clone,
) -> Packed
where
    R: Iterator<Item = &'a EncodedRoute>,
{
    let head = RouteConfiguration {
        name: name.to_owned(),
        ..Default::default()
    };
    let total = head.encoded_len()
        + vhosts
            .clone()
            .map(|(shell, _, len)| element_len(shell.len(len)))
            .sum::<usize>();
    let mut value = Vec::with_capacity(total);
    head.encode(&mut value)
        .expect("a vector is allocated at the encoded length");
    let mut h = Fnv1a::new();
    h.write(name.as_bytes());
    for (shell, routes, len) in vhosts {
        shell.write(routes, len, 2, &mut value, &mut h);
    }
    debug_assert_eq!(value.len(), total);
    Packed {
        name: name.to_owned(),
        version: format!("{}-{}", h.hex(), value.len()),
        any: Any {
            type_url: RouteConfiguration::type_url(),
            value,
        },
    }
}

/// Every route configuration of `ir` packed as [`super::emit`] packs it (the same bytes and
/// version), in output order, without building a RouteConfiguration: each virtual host's
/// routes are encoded into one buffer, then assembled around its shell. The memory is the
/// encoding twice, not a proto tree of every route.
pub(crate) fn route_configurations(ir: &Ir) -> Vec<Packed> {
    let module_cors = ir.settings.cors.as_ref();
    // A route table shared by virtual hosts (see `VirtualHost::routes`) is encoded once per
    // kind of listener and placed in each: the tables are found first, in order, then
    // encoded on all cores.
    let chains = super::route::chains(ir);
    let mut index: HashMap<(*const Vec<Route>, Variants), usize> = HashMap::new();
    let mut tables: Vec<(&[Route], Variants)> = Vec::new();
    let placed: Vec<Vec<(&VirtualHost, usize)>> = chains
        .iter()
        .map(|(_, security, vhosts)| {
            vhosts
                .iter()
                .map(|&vh| {
                    let variants = Variants::of(vh, *security, ir);
                    let t = *index
                        .entry((Arc::as_ptr(&vh.routes), variants))
                        .or_insert_with(|| {
                            tables.push((vh.routes.as_slice(), variants));
                            tables.len() - 1
                        });
                    (vh, t)
                })
                .collect()
        })
        .collect();
    drop(index);
    let encoded: Vec<Rc<EncodedRoute>> = encode_tables(&tables)
        .into_iter()
        // The hash of the parts is not the version here: see below.
        .map(|bytes| Rc::new(EncodedRoute { bytes, hash: 0 }))
        .collect();
    let mut out = Vec::with_capacity(chains.len());
    for ((name, _, _), vhosts) in chains.iter().zip(placed) {
        let parts: Vec<(VirtualHostShell, Rc<EncodedRoute>)> = vhosts
            .into_iter()
            .map(|(vh, t)| {
                (
                    VirtualHostShell::new(vh, module_cors),
                    Rc::clone(&encoded[t]),
                )
            })
            .collect();
        let vhosts = parts
            .iter()
            .map(|(shell, routes)| (shell, std::iter::once(&**routes), routes.element_len()));
        let mut packed = route_configuration(name, vhosts);
        // `emit` versions a resource by its bytes; the incremental session by its parts.
        packed.version = version_of(&packed.any.value);
        out.push(packed);
    }
    out
}

/// The encoded routes of each table, in order: many tables on all cores, and a large one's
/// routes in runs on all cores (the encoding of a list is its elements' encodings one after
/// the other, so the runs' bytes are joined).
fn encode_tables(tables: &[(&[Route], Variants)]) -> Vec<Vec<u8>> {
    let encode = |routes: &[Route], variants: Variants| {
        let mut bytes = Vec::new();
        let mut scratch = Vec::new();
        for r in routes {
            append_route(r, variants, &mut bytes, &mut scratch);
        }
        bytes
    };
    let total: usize = tables.iter().map(|(routes, _)| routes.len()).sum();
    let run = if total < crate::par::PARALLEL_MIN_ROUTES {
        tables.len()
    } else {
        1
    };
    crate::par::runs(tables, run, |run| {
        run.iter()
            .map(|&(routes, variants)| {
                if !crate::par::splits_alone(routes.len(), total, crate::par::PARALLEL_MIN_ROUTES) {
                    return encode(routes, variants);
                }
                let runs = crate::par::runs(
                    routes,
                    crate::par::run_len(routes.len(), crate::par::PARALLEL_MIN_ROUTES),
                    |run| encode(run, variants),
                );
                runs.concat()
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// The Envoy cluster of an IR cluster, packed.
pub fn cluster(c: &Cluster) -> Packed {
    Packed::of(&super::cluster::cluster(c))
}

/// The listeners of `skeleton` (an IR whose virtual hosts and clusters are not read) when
/// the routes allow the `upgrades`, packed, in output order.
pub fn listeners(skeleton: &Ir, upgrades: &BTreeSet<String>) -> Vec<Packed> {
    super::listener::listeners_with(skeleton, upgrades)
        .iter()
        .map(Packed::of)
        .collect()
}

/// A route configuration to assemble: its name and its virtual hosts (by name), each with
/// the security model of the listener whose chain takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfigPlan {
    pub name: String,
    pub virtual_hosts: Vec<(String, SecurityModel)>,
}

/// The route configurations the listeners of `skeleton` take, one per filter chain, in
/// output order (as [`super::emit`] builds them).
pub fn route_configuration_plans(skeleton: &Ir) -> Vec<RouteConfigPlan> {
    skeleton
        .listeners
        .iter()
        .flat_map(|l| {
            l.chains.iter().map(|c| RouteConfigPlan {
                name: c.route_config.clone(),
                virtual_hosts: c
                    .virtual_hosts
                    .iter()
                    .map(|v| (v.clone(), l.security))
                    .collect(),
            })
        })
        .collect()
}
