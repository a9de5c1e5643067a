//! State-of-the-world ADS (`StreamAggregatedResources`): wire types to and from the session.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::session::{Incoming, NameChange, Outgoing};
use super::status::Protocol;
use super::stream::Wire;

pub(crate) struct Sotw;

impl Wire for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const PROTOCOL: Protocol = Protocol::StateOfTheWorld;

    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn incoming(req: DiscoveryRequest) -> Incoming {
        Incoming {
            type_url: req.type_url,
            nonce: req.response_nonce,
            names: NameChange::Replace(req.resource_names),
            initial_versions: Vec::new(),
            error: req.error_detail.map(|s| (s.code, s.message)),
        }
    }

    fn outgoing(out: Outgoing) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: out.version,
            resources: out.resources.iter().map(|r| r.any().clone()).collect(),
            type_url: out.type_url,
            nonce: out.nonce,
            ..Default::default()
        }
    }
}
