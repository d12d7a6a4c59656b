//! Checks, before a pipeline starts (and before a reload stops the version it
//! replaces), that what it needs on the server is there: the streams it
//! reads and publishes into, and a durable consumer weir can pull from.
//! Errors are told apart by the server's JetStream error codes, not by the
//! wording of their messages.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};

use super::{Nats, SourceError};
use crate::config::Pipeline;

/// Checks every stream and consumer `pipeline` uses. Creates nothing.
pub async fn check_endpoints(nats: &Nats, pipeline: &Pipeline) -> Result<(), SourceError> {
    let source_subject = pipeline.source.subject.as_str();
    if let Some(js) = &pipeline.source.jetstream {
        let stream = get_stream(nats, &js.stream, source_subject, "[source] stream").await?;
        match stream.consumer_info(&js.durable).await {
            Ok(info) if info.config.deliver_subject.is_some() => {
                return Err(SourceError::JetStream {
                    what: format!("binding durable consumer \"{}\" of stream \"{}\"", js.durable, js.stream),
                    message: "it is a push consumer, and weir pulls: give [source] durable a name of its own, or delete that consumer".into(),
                });
            }
            Ok(_) => {}
            // Missing: weir creates it when the pipeline starts.
            Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound) => {}
            Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) => {}
            Err(e) => {
                return Err(SourceError::JetStream {
                    what: format!("looking up durable consumer \"{}\" of stream \"{}\"", js.durable, js.stream),
                    message: e.to_string(),
                });
            }
        }
    }
    if let Some(stream) = &pipeline.sink.stream {
        get_stream(nats, stream, &pipeline.sink.subject.to_string(), "[sink] stream").await?;
    }
    if let Some(dead) = &pipeline.dead_letter
        && let Some(stream) = &dead.stream
    {
        get_stream(nats, stream, dead.subject.as_str(), "[dead_letter] stream").await?;
    }
    Ok(())
}

/// Looks up stream `name`; a missing stream is [`SourceError::MissingStream`].
pub(crate) async fn get_stream(nats: &Nats, name: &str, subject: &str, key: &str) -> Result<async_nats::jetstream::stream::Stream, SourceError> {
    nats.js.get_stream(name).await.map_err(|e| match e.kind() {
        GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
            SourceError::MissingStream { stream: name.to_owned(), subject: subject.to_owned(), url: nats.url.to_string(), key: key.to_owned() }
        }
        _ => SourceError::JetStream { what: format!("looking up stream \"{name}\" ({key})"), message: e.to_string() },
    })
}
