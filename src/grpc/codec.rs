//! The codec of `Update`: the request is decoded by prost; the responses are [`Outgoing`]
//! messages, whose `Records` arrive already encoded (see `proto::records`) and are copied into the
//! frame as they are, while checkpoints, warnings and tasks are encoded by prost.
//!
//! An `Outgoing` holds its share of the Update's byte budget until it is dropped, which happens
//! here, right after its bytes were written into tonic's frame buffer.

use bytes::BufMut;
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstDecoder;

use crate::proto::UpdateRequest;
use crate::sync::{Outgoing, OutgoingMessage};

#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateCodec;

impl Codec for UpdateCodec {
    type Encode = Outgoing;
    type Decode = UpdateRequest;
    type Encoder = OutgoingEncoder;
    type Decoder = ProstDecoder<UpdateRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        OutgoingEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct OutgoingEncoder;

impl Encoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match &item.message {
            OutgoingMessage::Encoded(bytes) => dst.put_slice(bytes),
            OutgoingMessage::Message(message) => message
                .encode(dst)
                .map_err(|err| Status::internal(format!("cannot encode a message: {err}")))?,
        }
        Ok(())
    }
}

/// Unused: the server never decodes responses. Present because a tonic codec needs both halves.
impl Decoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn decode(&mut self, _src: &mut DecodeBuf<'_>) -> Result<Option<Outgoing>, Status> {
        Err(Status::unimplemented(
            "the server does not decode responses",
        ))
    }
}
