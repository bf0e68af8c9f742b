//! Reading what a registry sends, within bounds: every body has a cap, and a blob body must
//! keep moving (the stall watchdog). Nothing a server sends can make a read grow without
//! bound or wait forever.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

/// The most of an error answer's body kept for the message; the rest is not read (the
/// connection is dropped instead).
pub const MAX_ERROR_BODY: usize = 4 * 1024;
/// The largest token answer read.
pub const MAX_TOKEN_BODY: usize = 1024 * 1024;
/// The largest page of a tag list read.
pub const MAX_TAG_PAGE: usize = 16 * 1024 * 1024;
/// The largest body of an answer that should have none (upload status, mounts).
pub const MAX_EMPTY_BODY: usize = 64 * 1024;

/// Why a capped read failed.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The body is longer than the cap (announced, or read).
    TooLong,
    /// The connection broke while reading.
    Network(reqwest::Error),
}

/// Reads `response`'s body up to `cap` bytes; a longer one is refused without reading it all
/// (by its `Content-Length` when it has one).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Bytes, ReadFailure> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(ReadFailure::TooLong);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadFailure::Network)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadFailure::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The first [`MAX_ERROR_BODY`] bytes of `response`'s body (all of it when shorter); the rest
/// is never read. A broken body gives what arrived.
pub(crate) async fn read_prefix(mut response: reqwest::Response) -> Bytes {
    let mut body = BytesMut::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ERROR_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body.freeze()
}

/// The registry's error text from an error body: its JSON `errors[].code message`, or the
/// text itself, on one line, at most 300 characters.
pub(crate) fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let from_json = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("errors")?.as_array().map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| {
                        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                        let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
                        (!code.is_empty() || !message.is_empty())
                            .then(|| format!("{code} {message}").trim().to_owned())
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
    let detail = from_json.unwrap_or_else(|| text.into_owned());
    let detail: String = detail
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    match detail.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &detail[..i]),
        None => detail,
    }
}

/// How fast a blob body must move: at least `min_bytes` in every `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallRule {
    /// The window.
    pub window: Duration,
    /// Bytes that must move within each window.
    pub min_bytes: u64,
}

impl Default for StallRule {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            min_bytes: 64 * 1024,
        }
    }
}

/// Watches one body: fails a wait that would leave fewer than `min_bytes` moved in a window.
#[derive(Debug)]
pub struct Watchdog {
    rule: StallRule,
    window_start: Instant,
    moved: u64,
}

/// The body stopped moving.
#[derive(Debug, Clone, Copy)]
pub struct Stalled(pub StallRule);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stalled: fewer than {} KiB moved in {}s",
            self.0.min_bytes / 1024,
            self.0.window.as_secs()
        )
    }
}

impl Watchdog {
    /// A watchdog whose first window starts now.
    pub fn new(rule: StallRule) -> Self {
        Self {
            rule,
            window_start: Instant::now(),
            moved: 0,
        }
    }

    /// Runs `step`, which moves some bytes, within what is left of the current window.
    pub async fn guard<T>(
        &mut self,
        step: impl std::future::Future<Output = T>,
    ) -> Result<T, Stalled> {
        let deadline = self.window_start + self.rule.window;
        tokio::time::timeout_at(deadline, step)
            .await
            .map_err(|_| Stalled(self.rule))
    }

    /// Tells the watchdog the transfer waited `waited` for bandwidth budget: not a stall, so the
    /// window moves on by as much.
    pub fn paused(&mut self, waited: Duration) {
        self.window_start += waited;
    }

    /// Counts `n` bytes moved; a window that has seen enough closes and the next starts.
    pub fn moved(&mut self, n: usize) {
        self.moved += n as u64;
        if self.moved >= self.rule.min_bytes {
            self.window_start = Instant::now();
            self.moved = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_from_json_or_plain_text_on_one_line() {
        let json = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        assert_eq!(
            error_text(json),
            "TOOMANYREQUESTS You have reached your pull rate limit."
        );
        assert_eq!(error_text(b"bad\r\ngateway\x1b[31m"), "bad gateway[31m");
        let long = vec![b'x'; 5000];
        assert_eq!(error_text(&long).chars().count(), 301);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_stalls_and_a_steady_body_does_not() {
        let rule = StallRule {
            window: Duration::from_secs(30),
            min_bytes: 1000,
        };
        let mut dog = Watchdog::new(rule);
        // 1 byte every 20 s: the second wait runs out of the window.
        let first = dog.guard(tokio::time::sleep(Duration::from_secs(20))).await;
        assert!(first.is_ok());
        dog.moved(1);
        assert!(dog
            .guard(tokio::time::sleep(Duration::from_secs(20)))
            .await
            .is_err());
        // 1000 bytes every 20 s: each window closes in time.
        let mut dog = Watchdog::new(rule);
        for _ in 0..5 {
            assert!(dog
                .guard(tokio::time::sleep(Duration::from_secs(20)))
                .await
                .is_ok());
            dog.moved(1000);
        }
    }
}
