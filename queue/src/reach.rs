//! Reaching the broker within a bound. lapin tries a TCP connection again and again on its
//! own I/O thread (its reconnection backoff, for a broker that restarts under a running
//! process); left to it, a broker that is not there is minutes of silence. So the broker is
//! first reached here: a TCP connection within the connect timeout, then the AMQP handshake
//! within the same bound. A process that runs once fails with why, naming the broker (its
//! password masked); a long-running role says so at each attempt and tries again.

use std::future::Future;
use std::time::Duration;

use image_mirror_common::retry::RetryPolicy;
use image_mirror_common::secret::redact_url;

use crate::nodes::Nodes;
use crate::QueueError;

/// How a role waits for the broker.
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    /// The bound of one attempt: the TCP connection, then the AMQP handshake.
    pub timeout: Duration,
    /// Whether a failed attempt is tried again (a long-running role), with a WARN line each
    /// time, or is the answer (a command that runs once).
    pub wait: bool,
}

impl Default for Reach {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            wait: false,
        }
    }
}

/// The pauses between attempts of a role that waits: 1 s doubling to 30 s.
pub const WAITING: RetryPolicy = RetryPolicy {
    min_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(30),
    max_retries: usize::MAX,
};

impl Reach {
    /// Runs `attempt` (one connection to the broker at `url`): tried again while the broker
    /// does not answer, until the bound has passed (then its error is the answer), or, for a
    /// role that waits, until it answers, saying at each failure that it waits.
    pub async fn connect<T, F, Fut>(&self, url: &str, mut attempt: F) -> Result<T, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let shown = Nodes::parse(url).map_or_else(|_| redact_url(url), |n| n.shown());
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut failures = 0_usize;
        loop {
            let tried = match self.tcp(url).await {
                Ok(()) => match tokio::time::timeout(self.timeout, attempt()).await {
                    Ok(result) => result,
                    Err(_) => Err(QueueError::Broker(format!(
                        "{shown}: the broker took the connection but did not finish the AMQP \
                         handshake within {}s (is this a RabbitMQ port?)",
                        self.timeout.as_secs()
                    ))),
                },
                Err(e) => Err(e),
            };
            let e = match tried {
                Ok(value) => {
                    if failures > 0 && self.wait {
                        tracing::info!(broker = %shown, "connected to the broker");
                    }
                    return Ok(value);
                }
                Err(e) => e,
            };
            failures += 1;
            let delay = WAITING.delay(failures);
            if !self.wait {
                if tokio::time::Instant::now() + delay >= deadline {
                    return Err(e);
                }
                tracing::debug!(broker = %shown, error = %e, "the broker does not answer yet");
            } else {
                tracing::warn!(
                    "waiting for the broker at {shown}, attempt {failures}: {e}; trying again in {}s",
                    delay.as_secs()
                );
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// A TCP connection to one of the broker's nodes, each within the bound: the first that
    /// takes it, else the error of the last.
    async fn tcp(&self, url: &str) -> Result<(), QueueError> {
        let nodes = Nodes::parse(url)?;
        let mut last = None;
        for node in nodes.all() {
            match self.tcp_node(&node.uri, &node.shown).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| QueueError::Broker("no broker URL given".into())))
    }

    /// A TCP connection to one node's host and port, within the bound.
    async fn tcp_node(&self, uri: &lapin::uri::AMQPUri, shown: &str) -> Result<(), QueueError> {
        let (host, port) = (uri.authority.host.clone(), uri.authority.port);
        let secs = self.timeout.as_secs();
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(QueueError::Broker(
                format!("{shown}: nothing listens there (connection refused: is RabbitMQ running?)"),
            )),
            Ok(Err(e)) => Err(QueueError::Broker(format!("{shown}: cannot connect: {e}"))),
            Err(_) => Err(QueueError::Broker(format!(
                "{shown}: no answer within {secs}s (--amqp-connect-timeout): a firewall, or no route to {host}?"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_listening_is_a_prompt_error_naming_the_broker_without_its_password() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("amqp://user:hunter2@127.0.0.1:{port}/%2f");
        let reach = Reach {
            timeout: Duration::from_secs(3),
            wait: false,
        };
        let started = std::time::Instant::now();
        let err = reach
            .connect(&url, || async { Ok::<(), QueueError>(()) })
            .await
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(4), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(err.contains("connection refused"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
