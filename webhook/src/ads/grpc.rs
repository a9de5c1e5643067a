//! The ADS gRPC service as `serve` runs it: tonic decodes the requests, and each response is framed in a buffer of its own size, freed once written.
//!
//! tonic's generated server encodes all the responses of a stream into one buffer, which
//! keeps the capacity of the largest response it ever held for as long as the stream
//! lives. An ADS stream lives as long as its Envoy, and its largest response is usually the
//! first whole cluster set: at 2,000 clusters a 164 KiB response left a 256 KiB buffer on
//! each of a thousand streams (see "Fleet" in `docs/PERFORMANCE.md`). Here a response is
//! encoded into a buffer of exactly its size, handed to HTTP/2 as one data frame, and freed
//! once sent; an idle stream holds no encode buffer at all.
//!
//! gRPC framing (PROTOCOL-HTTP2.md): each message is a one-byte compressed flag (0: no
//! compression is offered), a four-byte big-endian length, and the message; the status
//! comes last, in trailers (`grpc-status`, `grpc-message`). Neither side compresses:
//! Envoy's ADS client does not unless its gRPC service is configured to, and a compressed
//! request ends the stream with an error, as it does with tonic's server, which is built
//! without compression here.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::{Body as HttpBody, Frame};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::codec::{DecodeBuf, Decoder, Streaming};
use tonic::server::NamedService;
use tonic::Status;

use super::stream::{self, Wire};
use super::{delta, sotw, Publisher, MAX_DECODING_MESSAGE_BYTES};

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The two ADS methods, served by a [`Publisher`].
#[derive(Clone, Debug)]
pub(crate) struct AdsService {
    publisher: Publisher,
}

impl AdsService {
    pub(crate) fn new(publisher: Publisher) -> Self {
        Self { publisher }
    }

    fn open<W: Wire>(&self, body: Body) -> Response<Body> {
        let requests = Streaming::new_request(
            ProtoDecoder::<W::Request>(PhantomData),
            body,
            None,
            Some(MAX_DECODING_MESSAGE_BYTES),
        );
        let responses =
            stream::open::<W>(&self.publisher.shared, self.publisher.ack_timeout, requests);
        let mut response = Response::new(Body::new(Framed {
            responses,
            done: false,
        }));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        response
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl tower::Service<Request<Body>> for AdsService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let response = match req.uri().path() {
            SOTW => self.open::<sotw::Sotw>(req.into_body()),
            DELTA => self.open::<delta::Delta>(req.into_body()),
            _ => Status::unimplemented("not an ADS method").into_http(),
        };
        std::future::ready(Ok(response))
    }
}

/// Decodes one request message (tonic has split off the gRPC framing already).
struct ProtoDecoder<T>(PhantomData<T>);

impl<T: Message + Default + Send + 'static> Decoder for ProtoDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        T::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable ADS request: {e}")))
    }
}

/// A stream's responses as an HTTP/2 body: one data frame per response, then trailers.
struct Framed<T> {
    responses: ReceiverStream<Result<T, Status>>,
    done: bool,
}

impl<T: Message> HttpBody for Framed<T> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match std::task::ready!(Pin::new(&mut self.responses).poll_next(cx)) {
            Some(Ok(message)) => Frame::data(framed(&message)),
            Some(Err(status)) => {
                self.done = true;
                Frame::trailers(trailers(&status))
            }
            None => {
                self.done = true;
                Frame::trailers(trailers(&Status::ok("")))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// One message in gRPC's length-prefixed framing, in a buffer of exactly its size.
fn framed(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = Vec::with_capacity(5 + len);
    buf.put_u8(0);
    // ADS responses are far below 4 GiB; gRPC cannot frame more.
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message.encode_raw(&mut buf);
    Bytes::from(buf)
}

fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // Only a message that is not a valid header value gets here; the code still goes.
        headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    headers
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    use super::*;

    #[test]
    fn a_message_is_framed_with_its_length() {
        let req = DiscoveryRequest {
            type_url: "t".to_owned(),
            ..Default::default()
        };
        let bytes = framed(&req);
        let len = req.encoded_len();
        assert_eq!(bytes.len(), 5 + len);
        assert_eq!(bytes[0], 0);
        assert_eq!(
            u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize,
            len
        );
        assert_eq!(DiscoveryRequest::decode(&bytes[5..]).unwrap(), req);
    }

    #[test]
    fn trailers_carry_the_status() {
        let t = trailers(&Status::unavailable("shutting down"));
        assert_eq!(t["grpc-status"], "14");
        assert_eq!(t["grpc-message"], "shutting%20down");
        assert_eq!(trailers(&Status::ok(""))["grpc-status"], "0");
    }
}
