//! Webhook delivery (`regua serve --state DIR --webhook URL`, docs/RUNTIME.md): the runtime
//! posts each due outbox entry to the channel provider's URL, with its idempotency key, and
//! records the answer as its delivery report; an attempt that fails for a reason that may pass
//! (no answer, a timeout, 408, 429, 5xx) is retried with backoff, one the provider refuses
//! (another 4xx, a redirect) fails at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;

use crate::automation::store::{Ack, Delivery};
use crate::automation::{Entries, OutboxEntry};
use crate::service::automation::Automation;

/// Entries read per pass.
const PAGE: usize = 100;
/// Posts in flight at once.
const PARALLEL: usize = 8;
/// How often an idle loop looks for due entries.
const IDLE: Duration = Duration::from_millis(250);
/// The most of a provider's answer kept as the entry's detail.
const DETAIL_BYTES: usize = 512;

/// Where and how the outbox is posted.
#[derive(Clone, Debug)]
pub struct Webhook {
    url: reqwest::Url,
    client: reqwest::Client,
    /// Attempts before an entry is reported failed.
    attempts: u32,
}

/// What one attempt came to.
enum Attempt {
    Delivered(String),
    /// Refused by the provider: not retried.
    Refused(String),
    /// May pass: retried.
    Failed(String),
}

impl Webhook {
    /// A webhook posting to `url` (plain `http://`: the binary carries no TLS stack; a relay
    /// beside the service holds the provider's TLS), each attempt given `timeout`, an entry
    /// reported failed after `attempts` attempts.
    pub fn new(url: &str, timeout: Duration, attempts: u32) -> anyhow::Result<Webhook> {
        let url =
            reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("--webhook: `{url}`: {e}"))?;
        if url.scheme() != "http" {
            anyhow::bail!(
                "--webhook: `{url}`: only http:// URLs are posted to (the service carries no TLS \
                 stack); point it at a relay beside the service that holds the provider's TLS"
            );
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Webhook {
            url,
            client,
            attempts: attempts.max(1),
        })
    }

    /// The wait before attempt `n + 1` after `n` failed ones: 30 s, doubling, at most an hour.
    pub fn backoff(n: u32) -> regua_sdk::Duration {
        let secs = 30i64 << n.saturating_sub(1).min(7);
        regua_sdk::Duration::seconds(secs.min(3600))
    }

    async fn post(&self, entry: &OutboxEntry) -> Attempt {
        let sent = self
            .client
            .post(self.url.clone())
            .header("idempotency-key", &entry.key)
            .json(entry)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(format!("webhook: no answer: {e}")),
        };
        let status = response.status();
        // Only the first bytes of the answer are kept, whatever its size.
        let mut body = Vec::new();
        while body.len() < DETAIL_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(DETAIL_BYTES);
        let body = String::from_utf8_lossy(&body);
        let detail = match body.trim() {
            "" => format!("webhook: HTTP {}", status.as_u16()),
            text => format!("webhook: HTTP {}: {text}", status.as_u16()),
        };
        let code = status.as_u16();
        if status.is_success() {
            Attempt::Delivered(detail)
        } else if code == 408 || code == 429 || status.is_server_error() {
            Attempt::Failed(detail)
        } else {
            Attempt::Refused(detail)
        }
    }

    /// Posts due entries as the service's clock reaches them, until the service stops.
    pub async fn run(self, auto: Arc<Automation>) {
        loop {
            let now = auto.clock.now();
            let me = auto.clone();
            // One replica of those sharing a database delivers; the others stand by.
            let page = tokio::task::spawn_blocking(move || {
                me.with_store(|s| match s.lead("webhook")? {
                    true => s.outbox(Entries::Deliverable(now), 0, PAGE),
                    false => Ok(Vec::new()),
                })
            })
            .await;
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    tracing::error!("webhook: reading the outbox: {e:#}");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            if page.is_empty() {
                tokio::time::sleep(IDLE).await;
                continue;
            }
            let me = &self;
            let attempts: Vec<(OutboxEntry, Attempt)> = futures_util::stream::iter(page)
                .map(|e| async move {
                    let a = me.post(&e).await;
                    (e, a)
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            let max = self.attempts;
            let me = auto.clone();
            let written = tokio::task::spawn_blocking(move || {
                me.with_store(|s| {
                    for (entry, attempt) in attempts {
                        let (state, detail) = match attempt {
                            Attempt::Delivered(d) => (Delivery::Delivered, d),
                            Attempt::Refused(d) => (Delivery::Failed, d),
                            Attempt::Failed(d) if entry.attempts + 1 >= max => (
                                Delivery::Failed,
                                format!("{d} (attempt {} of {max}: given up)", entry.attempts + 1),
                            ),
                            Attempt::Failed(d) => {
                                let retry_at = now + Webhook::backoff(entry.attempts + 1);
                                s.retry(&entry.key, retry_at, &d)?;
                                continue;
                            }
                        };
                        let ack = Ack {
                            key: entry.key,
                            state,
                            detail: Some(detail),
                        };
                        s.ack(&[ack], now)?;
                    }
                    anyhow::Ok(())
                })
            })
            .await;
            if let Ok(Err(e)) = written {
                tracing::error!("webhook: recording deliveries: {e:#}");
                tokio::time::sleep(IDLE).await;
            }
        }
    }
}
