//! The mutation stream: every mutation-log record, once committed, published to NATS
//! JetStream for services that follow edits (DVID publishes the same records to Kafka).
//!
//! It is a log follower of the mutation service (`Engine::follow_log`): each record reaches it
//! through a durable outbox written in the record's own commit, so a record is published
//! at least once whatever happens between the commit and the publication (NATS down, the
//! server killed), in commit order per store. A run of records is acknowledged only when
//! JetStream acknowledged every one of them; a failed run is retried with backoff, whole, and
//! JetStream drops the repeats it has seen within its duplicate window by their message id
//! (`Nats-Msg-Id`: `<DataUUID>-<MutationID>`, or `<DataUUID>-c<CommitSeq>` for records of
//! unnumbered writes such as keyvalue posts). Consumers deduplicate by the same id beyond that
//! window. docs/reliability.md has the subjects and the message shape.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use serde::Deserialize;
use serde_json::Value;
use tessera_engine::engine::Engine;
use tessera_engine::mutation::{COMMIT_SEQ, Subscriber};
use tessera_engine::sync::{Delta, SyncEvent};

/// `[nats]` of the configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct NatsConfig {
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// First token of every subject (default `dvid`): records of an instance go to
    /// `<prefix>.dvidrepo-<root UUID>-data-<DataUUID>`, DVID's Kafka topic name.
    pub subject_prefix: Option<String>,
    /// The JetStream stream, created when missing over `<prefix>.>` (default `DVID_MUTATIONS`).
    pub stream: Option<String>,
}

/// How long a publication may wait for JetStream's acknowledgement before the run is retried.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

pub struct NatsStream {
    config: NatsConfig,
    runtime: tokio::runtime::Handle,
    engine: Weak<Engine>,
    /// Connected, with the stream known to exist; reset when a run fails so the next one
    /// checks again.
    context: tokio::sync::Mutex<Option<jetstream::Context>>,
}

impl NatsStream {
    /// Starts following `engine`'s log (before the server accepts requests, so no record
    /// escapes it). Connects lazily: the server starts, and edits succeed, with NATS down.
    pub fn start(engine: &Arc<Engine>, config: NatsConfig) -> anyhow::Result<()> {
        let stream = Arc::new(NatsStream {
            config,
            runtime: tokio::runtime::Handle::current(),
            engine: Arc::downgrade(engine),
            context: tokio::sync::Mutex::new(None),
        });
        tracing::info!(url = %stream.config.url, subjects = %format!("{}.>", stream.prefix()), "publishing mutations to NATS JetStream");
        engine
            .follow_log("nats", stream)
            .map_err(|e| anyhow::anyhow!("following the mutation log: {e}"))
    }

    fn prefix(&self) -> &str {
        self.config.subject_prefix.as_deref().unwrap_or("dvid")
    }

    async fn context(&self) -> anyhow::Result<jetstream::Context> {
        let mut guard = self.context.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(ACK_TIMEOUT)
            .connect(self.config.url.as_str())
            .await?;
        let mut js = jetstream::new(client);
        js.set_timeout(ACK_TIMEOUT);
        let name = self.config.stream.as_deref().unwrap_or("DVID_MUTATIONS");
        js.get_or_create_stream(jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{}.>", self.prefix())],
            ..Default::default()
        })
        .await?;
        tracing::info!(url = %self.config.url, stream = name, "connected to NATS JetStream");
        *guard = Some(js.clone());
        Ok(js)
    }

    async fn publish(&self, events: &[SyncEvent]) -> anyhow::Result<()> {
        let js = self.context().await?;
        let engine = self
            .engine
            .upgrade()
            .ok_or_else(|| anyhow::anyhow!("the server is shutting down"))?;
        let max_payload = js.client().server_info().max_payload;
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let Delta::Logged(record) = &e.delta else {
                continue;
            };
            let Some(root) = engine.repo_of_instance(&e.publisher) else {
                // The instance was deleted since: nobody can follow its subject any more.
                continue;
            };
            let subject = format!("{}.dvidrepo-{root}-data-{}", self.prefix(), e.publisher);
            let seq = record.get(COMMIT_SEQ).and_then(Value::as_u64).unwrap_or(0);
            let id = match e.mutation_id {
                0 => format!("{}-c{seq}", e.publisher),
                m => format!("{}-{m}", e.publisher),
            };
            let mut payload = serde_json::to_vec(record)?;
            if max_payload > 0 && payload.len() + 1024 > max_payload {
                // Too big for one message (a cleave of very many supervoxels): DVID puts such
                // records in a blob; here the message says where to read it whole, and the
                // stream goes on instead of retrying a message NATS will never take.
                payload = serde_json::to_vec(&truncated(record, payload.len()))?;
            }
            let msg = PublishMessage::build()
                .payload(payload.into())
                .message_id(id)
                .header("Tessera-Commit-Seq", seq.to_string().as_str());
            acks.push(js.send_publish(subject, msg).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }
}

impl Subscriber for NatsStream {
    fn apply(&self, events: &[SyncEvent]) -> tessera_engine::Result<()> {
        // Sync workers are plain threads, outside the runtime: they may block on it.
        self.runtime.block_on(async {
            let result = self.publish(events).await;
            if result.is_err() {
                *self.context.lock().await = None;
            }
            result.map_err(|e| tessera_engine::Error::Internal(format!("publishing to NATS: {e}")))
        })
    }
}

/// The stand-in for a record too large for one message: its identifying fields, and how to
/// read it whole (`GET …/mutations` of its version).
fn truncated(record: &Value, bytes: usize) -> Value {
    let mut out = serde_json::Map::new();
    for k in [
        "Action",
        "MutationID",
        "UUID",
        COMMIT_SEQ,
        "Timestamp",
        "User",
        "App",
    ] {
        if let Some(v) = record.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    out.insert("Truncated".into(), true.into());
    out.insert("Bytes".into(), bytes.into());
    Value::Object(out)
}
