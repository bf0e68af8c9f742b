//! The broker's nodes: `--amqp-url` (and `AMQP_URL`) names one node, or a cluster's several,
//! comma-separated. A connection goes to the first node that takes it; when its node goes, the
//! connection's recovery tries the others first (the node that just dropped it last), so a
//! role rides out the loss of a node as it rides out a restart: its channels and consumers
//! come back on another member, and the quorum queues they use are there too.
//!
//! The nodes share the first URL's credentials and virtual host (a cluster's nodes share
//! users); every node's password is masked wherever a URL is shown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use image_mirror_common::secret::redact_url;
use lapin::tcp::{AMQPUriTcpExt, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

use crate::QueueError;

/// The broker's nodes, and the one the last connection went to.
#[derive(Debug)]
pub(crate) struct Nodes {
    nodes: Vec<Node>,
    /// The node of the last connection (an index into `nodes`).
    current: AtomicUsize,
    /// Whether a connection was ever made (a later one is a recovery).
    connected_once: std::sync::atomic::AtomicBool,
}

/// One node: its URL parsed, and as shown (password masked).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) uri: AMQPUri,
    pub(crate) shown: String,
}

impl Nodes {
    /// The nodes of `urls` (comma-separated; spaces around each ignored).
    pub(crate) fn parse(urls: &str) -> Result<Arc<Self>, QueueError> {
        let nodes = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                let shown = redact_url(u);
                let uri = u
                    .parse::<AMQPUri>()
                    .map_err(|e| QueueError::Broker(format!("{shown}: not an AMQP URL: {e}")))?;
                Ok(Node { uri, shown })
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        if nodes.is_empty() {
            return Err(QueueError::Broker("no broker URL given".into()));
        }
        Ok(Arc::new(Self {
            nodes,
            current: AtomicUsize::new(0),
            connected_once: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Every node, in the order given.
    pub(crate) fn all(&self) -> &[Node] {
        &self.nodes
    }

    /// The nodes as shown (passwords masked), comma-separated.
    pub(crate) fn shown(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.shown.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The order to try the nodes in: from the first at the start; after a connection broke,
    /// from the node after the one it was on, that one last.
    fn order(&self) -> Vec<usize> {
        let n = self.nodes.len();
        let start = if self.connected_once.load(Ordering::Relaxed) {
            self.current.load(Ordering::Relaxed) + 1
        } else {
            0
        };
        (0..n).map(|i| (start + i) % n).collect()
    }

    /// A connection to the first node that takes it, whose recovery (when `properties` enable
    /// it) goes through the nodes again.
    pub(crate) fn connect(
        self: &Arc<Self>,
        properties: ConnectionProperties,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Connection, lapin::Error>> + Send>>
    {
        // Boxed: the connector's future is deep, and every future that awaits it (a copy, by
        // way of the fleet's coordination) would carry its whole type.
        let nodes = Arc::clone(self);
        Box::pin(async move { nodes.open(properties).await })
    }

    async fn open(
        self: Arc<Self>,
        properties: ConnectionProperties,
    ) -> Result<Connection, lapin::Error> {
        let runtime = lapin::runtime::default_runtime()?;
        let nodes = Arc::clone(&self);
        let first = self.nodes[0].uri.clone();
        Connection::connector(
            first,
            runtime,
            async move |_uri, runtime| {
                let mut last = None;
                for i in nodes.order() {
                    let node = &nodes.nodes[i];
                    let tls = OwnedTLSConfig::default();
                    match AMQPUriTcpExt::connect_with_config_async(&node.uri, tls.as_ref(), &runtime)
                        .await
                    {
                        Ok(stream) => {
                            let moved = nodes.current.swap(i, Ordering::Relaxed) != i;
                            let again = nodes.connected_once.swap(true, Ordering::Relaxed);
                            if again && moved {
                                tracing::info!(broker = %node.shown, "connected to another node of the broker");
                            }
                            return Ok(stream);
                        }
                        Err(e) => {
                            tracing::debug!(broker = %node.shown, error = %e, "a broker node does not answer");
                            last = Some(e);
                        }
                    }
                }
                Err(last
                    .unwrap_or_else(|| std::io::Error::other("no broker node"))
                    .into())
            },
            properties,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_are_several_nodes_and_a_recovery_tries_the_next_first() {
        let nodes = Nodes::parse("amqp://u:secret@a:5672/%2f, amqp://u:secret@b:5673/%2f,amqp://c")
            .unwrap();
        assert_eq!(nodes.all().len(), 3);
        assert_eq!(
            nodes.shown(),
            "amqp://u:***@a:5672/%2f,amqp://u:***@b:5673/%2f,amqp://c"
        );
        assert_eq!(nodes.order(), [0, 1, 2]);
        nodes.connected_once.store(true, Ordering::Relaxed);
        nodes.current.store(0, Ordering::Relaxed);
        assert_eq!(
            nodes.order(),
            [1, 2, 0],
            "the node that dropped the connection last"
        );
        nodes.current.store(2, Ordering::Relaxed);
        assert_eq!(nodes.order(), [0, 1, 2]);
    }

    #[test]
    fn an_empty_list_or_a_bad_url_is_refused_without_its_password() {
        assert!(Nodes::parse(" , ").is_err());
        let e = Nodes::parse("amqp://u:secret@a:5672/%2f,http://u:secret@b:x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
