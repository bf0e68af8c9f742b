//! The operations endpoint of long-running roles, at `--metrics-addr`: `GET /metrics` (the
//! Prometheus text format), `GET /healthz` (the process answers) and `GET /readyz` (the broker
//! connection is up). Also refreshes the queue depth gauges from the broker every 15 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use image_mirror_common::metrics;
use image_mirror_queue::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How often queue depths are read.
const DEPTH_EVERY: Duration = Duration::from_secs(15);

/// Binds `addr` and serves the endpoint in the background for as long as the process runs.
/// `broker` decides readiness and feeds the queue gauges; without one the role is ready.
pub async fn start(addr: SocketAddr, broker: Option<Arc<Broker>>) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-addr {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    if let Some(b) = &broker {
        tokio::spawn(refresh_depths(Arc::clone(b)));
    }
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let broker = broker.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, broker.as_deref()).await {
                            tracing::debug!(error = %e, "metrics request");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "metrics endpoint: accept failed"),
            }
        }
    });
    Ok(bound)
}

async fn refresh_depths(broker: Arc<Broker>) {
    loop {
        if let Ok(depths) = broker.depths().await {
            for d in depths {
                metrics::QUEUE_READY.set(&[&d.name], d.ready as f64);
                metrics::QUEUE_CONSUMERS.set(&[&d.name], d.consumers as f64);
            }
        }
        tokio::time::sleep(DEPTH_EVERY).await;
    }
}

async fn answer(mut stream: TcpStream, broker: Option<&Broker>) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0_u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let ready = broker.is_none_or(Broker::is_connected);
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            metrics::READY.set(&[], if ready { 1.0 } else { 0.0 });
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(),
            )
        }
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") => {
            if ready {
                ("200 OK", "text/plain", "ready\n".to_owned())
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    "the broker connection is down\n".to_owned(),
                )
            }
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
