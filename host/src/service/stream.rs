//! Events from a NATS JetStream stream (`regua serve --events nats://HOST:PORT/SUBJECT`): a
//! durable pull consumer every replica shares, read by one replica at a time (the others
//! stand by to take over), each message one input (the JSON object POST /v1/events takes),
//! acknowledged only once its input's step is committed (docs/RUNTIME.md, "Beyond one
//! machine").
//!
//! The message id (`Nats-Msg-Id` header) is the input's id: JetStream drops a repeat published
//! within the stream's duplicate window, and the runtime answers any later one, or a message
//! delivered again (a replica stopped between its commit and its ack), as a duplicate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt as _;

use crate::automation::{Input, Status};
use crate::service::automation::{Automation, MAX_AHEAD};
use crate::service::http::AppState;

/// Messages fetched (and applied together) at most per pull.
const BATCH: usize = 500;

/// How long a pull waits for messages when the stream is idle.
const IDLE: Duration = Duration::from_secs(1);

/// How often a replica that does not read the stream looks whether it should.
const STANDBY: Duration = Duration::from_millis(250);

/// After a failure to reach the server or to apply inputs: how long before trying again.
const BACKOFF: Duration = Duration::from_secs(1);

/// Where events come from: `nats://HOST:PORT/SUBJECT`.
#[derive(Clone, Debug)]
pub struct Source {
    /// `nats://HOST:PORT`.
    pub server: String,
    /// The subject the events are published on.
    pub subject: String,
    /// The stream to read (found by its subject; created with this name if none has it).
    pub stream: String,
    /// The durable consumer's name, the same on every replica.
    pub consumer: String,
    /// How long a message delivered to a replica waits for its ack before it is delivered
    /// again (to any replica): the take-over time of a replica that stopped mid-batch.
    pub ack_wait: Duration,
}

impl Source {
    /// Reads `nats://HOST:PORT/SUBJECT`.
    pub fn parse(url: &str) -> Result<(String, String), String> {
        let rest = url.strip_prefix("nats://").ok_or_else(|| {
            format!("`{url}`: expected nats://HOST:PORT/SUBJECT (a NATS server and the subject the events are published on)")
        })?;
        let (server, subject) = rest
            .split_once('/')
            .ok_or_else(|| format!("`{url}`: no subject; expected nats://HOST:PORT/SUBJECT"))?;
        if server.is_empty() {
            return Err(format!(
                "`{url}`: no server; expected nats://HOST:PORT/SUBJECT"
            ));
        }
        let valid = !subject.is_empty()
            && subject
                .split('.')
                .all(|t| !t.is_empty() && !t.contains([' ', '\t', '*', '>']));
        if !valid {
            return Err(format!(
                "`{url}`: `{subject}` is not a subject to read (dot-separated tokens, no spaces \
                 or wildcards)"
            ));
        }
        Ok((format!("nats://{server}"), subject.to_owned()))
    }

    /// Connects and finds (or creates) the stream and the durable consumer.
    async fn consumer(&self) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(10))
            .name("regua")
            .connect(self.server.as_str())
            .await
            .with_context(|| format!("cannot connect to NATS at {}", self.server))?;
        let js = jetstream::new(client);
        let stream = match js.stream_by_subject(self.subject.as_str()).await {
            Ok(name) => js.get_stream(name).await?,
            Err(_) => js
                .get_or_create_stream(jetstream::stream::Config {
                    name: self.stream.clone(),
                    subjects: vec![self.subject.clone()],
                    ..Default::default()
                })
                .await
                .with_context(|| {
                    format!(
                        "cannot create the stream `{}` for `{}`",
                        self.stream, self.subject
                    )
                })?,
        };
        let config = pull::Config {
            durable_name: Some(self.consumer.clone()),
            filter_subject: self.subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            ..Default::default()
        };
        stream
            .get_or_create_consumer(&self.consumer, config)
            .await
            .with_context(|| format!("cannot open the consumer `{}`", self.consumer))
    }
}

/// One message's input, or why it is refused: its payload read as an input, its id the
/// message id when it has one.
fn input_of(message: &async_nats::Message) -> Result<Input, String> {
    let text = std::str::from_utf8(&message.payload)
        .map_err(|_| "the message is not UTF-8 text".to_owned())?;
    let msg_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned());
    let Some(msg_id) = msg_id else {
        return Input::parse(text);
    };
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the message is not a JSON object: {e}"))?;
    let Some(object) = value.as_object_mut() else {
        return Err("the message is not a JSON object".into());
    };
    match object.get("id") {
        None => {
            object.insert("id".into(), msg_id.into());
        }
        Some(serde_json::Value::String(id)) if *id == msg_id => {}
        Some(id) => {
            return Err(format!(
                "field `id`: {id} differs from the message id `{msg_id}` (Nats-Msg-Id), which \
                 is the event's id"
            ));
        }
    }
    Input::parse(&value.to_string())
}

/// Reads the stream until the service stops: each pull's messages applied together, then
/// acknowledged. A message that is not an input, or an input refused, is logged and not
/// delivered again (it would be refused again); one whose step failed (the store unreachable)
/// is delivered again after a pause.
pub async fn run(source: Source, auto: Arc<Automation>, state: AppState) {
    loop {
        let consumer = match source.consumer().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("events: {e:#}");
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        tracing::info!(
            server = %source.server,
            subject = %source.subject,
            consumer = %source.consumer,
            "reading events"
        );
        if let Err(e) = pull_until_error(&source, &consumer, &auto, &state).await {
            tracing::error!("events: {e:#}");
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

/// Whether this replica is the one reading the stream
/// ([`crate::automation::Store::lead`]).
async fn leads(auto: &Arc<Automation>, role: &str) -> anyhow::Result<bool> {
    let (me, role) = (auto.clone(), role.to_owned());
    tokio::task::spawn_blocking(move || me.with_store(|s| s.lead(&role)))
        .await
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?
}

async fn pull_until_error(
    source: &Source,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    auto: &Arc<Automation>,
    state: &AppState,
) -> anyhow::Result<()> {
    let role = format!("events:{}:{}", source.subject, source.consumer);
    let mut leading = false;
    loop {
        // One replica reads the stream at a time, so a customer's inputs are applied in the
        // stream's order: replicas pulling together would each take some of one customer's
        // messages and apply them in whatever order they finish (docs/RUNTIME.md).
        if !leads(auto, &role).await? {
            leading = false;
            tokio::time::sleep(STANDBY).await;
            continue;
        }
        if !leading {
            leading = true;
            // Taking over: messages the replica before took and did not acknowledge come
            // again once their ack wait is over, before any new one; reading new ones first
            // would apply a customer's later inputs before its earlier ones.
            let pending = consumer.get_info().await?.num_ack_pending;
            if pending > 0 {
                tracing::info!(
                    pending,
                    "reading the stream: waiting out the ack wait of the messages taken before"
                );
                tokio::time::sleep(source.ack_wait + Duration::from_millis(100)).await;
            }
            tracing::info!(subject = %source.subject, "this replica reads the stream");
        }
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .expires(IDLE)
            .messages()
            .await?;
        let mut messages = Vec::new();
        while let Some(m) = batch.next().await {
            messages.push(m.map_err(|e| anyhow::anyhow!(e))?);
        }
        if messages.is_empty() {
            continue;
        }
        let now = auto.clock.now();
        let ahead = regua_sdk::Duration::millis(MAX_AHEAD.as_millis() as i64);
        let mut inputs = Vec::new();
        let mut applied = Vec::new();
        for m in messages {
            let read = input_of(&m).and_then(|input| match input.at {
                Some(at) if at > now + ahead => Err(format!(
                    "field `at`: {at} is ahead of the service's clock ({now}) by more than {} s",
                    MAX_AHEAD.as_secs()
                )),
                _ => Ok(input),
            });
            match read {
                Ok(input) => {
                    inputs.push(input);
                    applied.push(m);
                }
                Err(error) => {
                    refused(&m, &error);
                    let status = Status::Refused { error };
                    state
                        .metrics()
                        .inputs("stream", std::slice::from_ref(&status));
                    m.ack_with(AckKind::Term)
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                }
            }
        }
        let ids: Vec<String> = inputs.iter().map(|i| i.id.clone()).collect();
        let (ticket, statuses) = auto.submit(inputs);
        let evaluator = state.evaluator();
        let threads = evaluator.threads();
        let me = auto.clone();
        let ran = evaluator
            .run(move |w| me.apply_waiting(w, ticket, threads))
            .await;
        let statuses = match (ran, statuses.await) {
            (Ok(()), Ok(Ok(statuses))) => statuses,
            (_, Ok(Err(e))) => {
                tracing::error!("events: applying {} inputs: {e}", ids.len());
                for m in applied {
                    let _ = m.ack_with(AckKind::Nak(Some(BACKOFF))).await;
                }
                continue;
            }
            _ => {
                tracing::error!("events: applying {} inputs: a worker panicked", ids.len());
                for m in applied {
                    let _ = m.ack_with(AckKind::Nak(Some(BACKOFF))).await;
                }
                continue;
            }
        };
        state.metrics().inputs("stream", &statuses);
        for ((m, id), status) in applied.into_iter().zip(ids).zip(statuses) {
            if let Status::Refused { error } = &status {
                tracing::warn!(id, "event refused: {error}");
            }
            m.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        }
    }
}

/// Logs a message that is not an input the runtime can apply.
fn refused(m: &jetstream::Message, error: &str) {
    let seq = m.info().map(|i| i.stream_sequence).unwrap_or_default();
    tracing::warn!(
        stream_sequence = seq,
        subject = %m.subject,
        "event refused, not delivered again: {error}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_url_names_the_server_and_a_subject() {
        assert_eq!(
            Source::parse("nats://127.0.0.1:4222/regua.events"),
            Ok(("nats://127.0.0.1:4222".into(), "regua.events".into()))
        );
        for bad in [
            "http://127.0.0.1:4222/x",
            "nats://127.0.0.1:4222",
            "nats:///x",
            "nats://h:1/a..b",
            "nats://h:1/a.*",
            "nats://h:1/a.>",
            "nats://h:1/",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    fn message(payload: &str, id: Option<&str>) -> async_nats::Message {
        let headers = id.map(|id| {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", id);
            h
        });
        async_nats::Message {
            subject: "e".into(),
            reply: None,
            payload: payload.as_bytes().to_vec().into(),
            headers,
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn the_message_id_is_the_inputs_id() {
        let event = r#"{"customer":"c","at":"2025-03-10T12:00:00Z","name":"login"}"#;
        assert_eq!(input_of(&message(event, Some("m-1"))).unwrap().id, "m-1");
        let with = r#"{"id":"m-1","customer":"c","at":"2025-03-10T12:00:00Z","name":"login"}"#;
        assert_eq!(input_of(&message(with, Some("m-1"))).unwrap().id, "m-1");
        assert_eq!(input_of(&message(with, None)).unwrap().id, "m-1");
        let other = input_of(&message(with, Some("m-2"))).unwrap_err();
        assert!(
            other.contains("field `id`") && other.contains("m-2"),
            "{other}"
        );
        assert!(input_of(&message(event, None)).is_err(), "no id at all");
        assert!(input_of(&message("[1]", Some("m-1"))).is_err());
        assert!(input_of(&message("{", Some("m-1"))).is_err());
    }
}
