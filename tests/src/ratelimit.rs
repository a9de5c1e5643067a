//! A gRPC rate limit service on loopback (`envoy.service.ratelimit.v3`): each descriptor may pass a fixed number of times, then it is over the limit.
//!
//! A descriptor is written `key=value,key=value` (its entries in order); the service counts
//! the requests of each and answers `OVER_LIMIT` once a count passes the limit, so Envoy
//! answers 429. It records every request (domain and descriptors) for the tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{io, Result};

/// One request Envoy sent: its domain and descriptors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub domain: String,
    /// Each descriptor as `key=value,key=value`.
    pub descriptors: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    counts: HashMap<String, u32>,
    asked: Vec<Asked>,
}

/// A running rate limit service; dropping it stops it.
#[derive(Debug)]
pub struct RateLimitServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

struct Service {
    limit: u32,
    state: Arc<Mutex<State>>,
}

impl RateLimitServer {
    /// A service that lets each descriptor pass `limit` times.
    pub async fn start(limit: u32) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding the rate limit service"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the rate limit service's address"))?;
        let state: Arc<Mutex<State>> = Arc::default();
        let service = RateLimitServiceServer::new(Service {
            limit,
            state: state.clone(),
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Ok(Self { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far, oldest first.
    pub fn asked(&self) -> Vec<Asked> {
        self.state.lock().expect("not poisoned").asked.clone()
    }
}

impl Drop for RateLimitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> std::result::Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let request = request.into_inner();
        let descriptors: Vec<String> = request
            .descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| format!("{}={}", e.key, e.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        let mut state = self.state.lock().expect("not poisoned");
        let mut over = false;
        for d in &descriptors {
            let n = state.counts.entry(d.clone()).or_default();
            *n += 1;
            over |= *n > self.limit;
        }
        state.asked.push(Asked {
            domain: request.domain,
            descriptors,
        });
        let code = if over { Code::OverLimit } else { Code::Ok };
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: code as i32,
            ..Default::default()
        }))
    }
}
