//! Incremental ADS (`DeltaAggregatedResources`): wire types to and from the session.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as WireResource,
};

use super::session::{Incoming, NameChange, Outgoing};
use super::status::Protocol;
use super::stream::Wire;

pub(crate) struct Delta;

impl Wire for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const PROTOCOL: Protocol = Protocol::Delta;

    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn incoming(req: DeltaDiscoveryRequest) -> Incoming {
        Incoming {
            type_url: req.type_url,
            nonce: req.response_nonce,
            names: NameChange::Delta {
                subscribe: req.resource_names_subscribe,
                unsubscribe: req.resource_names_unsubscribe,
            },
            initial_versions: req.initial_resource_versions.into_iter().collect(),
            error: req.error_detail.map(|s| (s.code, s.message)),
        }
    }

    fn outgoing(out: Outgoing) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: out.version,
            resources: out
                .resources
                .iter()
                .map(|r| WireResource {
                    name: r.name().to_owned(),
                    version: r.version().to_owned(),
                    resource: Some(r.any().clone()),
                    ..Default::default()
                })
                .collect(),
            type_url: out.type_url,
            removed_resources: out.removed,
            nonce: out.nonce,
            ..Default::default()
        }
    }
}
