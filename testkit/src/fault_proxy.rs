//! A TCP proxy that breaks things on purpose between a client and a registry: it cuts the
//! connection once after a number of bytes in either direction, or answers the first
//! connections itself with canned HTTP responses (429, 503), and counts every byte it carries.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What to break.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Cut the connection carrying the client's byte number N (counted over all connections),
    /// once.
    pub cut_upstream_after: Option<u64>,
    /// Cut the connection carrying the server's byte number N (counted over all connections),
    /// once.
    pub cut_downstream_after: Option<u64>,
    /// Raw HTTP responses for the first connections, one each, after reading a request head.
    pub canned: Vec<Vec<u8>>,
    /// Forward each request only once its body has fully arrived, as a front proxy with
    /// request buffering (nginx's default) does: a request cut short never reaches the server.
    pub buffer_requests: bool,
    /// Carry at most this many bytes a second from the client to the server, on each
    /// connection: a slow link.
    pub upload_rate: Option<u64>,
}

impl Faults {
    /// `n` answers of `429 Too Many Requests` with `Retry-After: retry_after`.
    pub fn too_many_requests(n: usize, retry_after: u64) -> Self {
        Self {
            canned: (0..n)
                .map(|_| {
                    format!(
                        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .into_bytes()
                })
                .collect(),
            ..Self::default()
        }
    }

    /// `n` answers of `503 Service Unavailable`.
    pub fn unavailable(n: usize) -> Self {
        Self {
            canned: (0..n)
                .map(|_| {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                })
                .collect(),
            ..Self::default()
        }
    }
}

#[derive(Default)]
struct State {
    up: AtomicU64,
    down: AtomicU64,
    cut_up: Option<u64>,
    cut_down: Option<u64>,
    cut_up_done: AtomicBool,
    buffer_requests: bool,
    cut_down_done: AtomicBool,
    upload_rate: Option<u64>,
    canned: Mutex<VecDeque<Vec<u8>>>,
    canned_served: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    open: AtomicU64,
    cut_now: tokio::sync::Notify,
    cuts: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (`host:port`).
    pub fn start(upstream: &str, faults: Faults) -> Self {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let state = Arc::new(State {
            cut_up: faults.cut_upstream_after,
            cut_down: faults.cut_downstream_after,
            canned: Mutex::new(faults.canned.into()),
            buffer_requests: faults.buffer_requests,
            upload_rate: faults.upload_rate,
            ..State::default()
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        let (stop, stopped) = oneshot::channel();
        let thread_state = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = stopped => {}
                    _ = accept_loop(listener, upstream, thread_state) => {}
                }
            });
        });
        Self {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Cuts every connection the proxy carries at this moment (a fault at a time of the
    /// caller's choosing); how many there were.
    pub fn cut_all(&self) -> u64 {
        let open = self.state.open.load(Ordering::SeqCst);
        self.state.cut_now.notify_waiters();
        self.state.cuts.fetch_add(open, Ordering::SeqCst);
        open
    }

    /// Connections cut by [`cut_all`](Self::cut_all) so far.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Bytes carried from clients to the server.
    pub fn bytes_up(&self) -> u64 {
        self.state.up.load(Ordering::SeqCst)
    }

    /// Bytes carried from the server to clients.
    pub fn bytes_down(&self) -> u64 {
        self.state.down.load(Ordering::SeqCst)
    }

    /// Whether the upstream cut happened.
    pub fn cut_up_done(&self) -> bool {
        self.state.cut_up_done.load(Ordering::SeqCst)
    }

    /// Whether the downstream cut happened.
    pub fn cut_down_done(&self) -> bool {
        self.state.cut_down_done.load(Ordering::SeqCst)
    }

    /// The most requests in flight at the same time: sent by the client (bytes went up on
    /// a connection) and not yet answered (no byte came down on it since).
    pub fn peak_requests(&self) -> u64 {
        self.state.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Canned responses served so far.
    pub fn canned_served(&self) -> u64 {
        self.state.canned_served.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let canned = state.canned.lock().expect("canned lock").pop_front();
            match canned {
                Some(response) => answer_canned(client, &response, &state).await,
                None => relay(client, upstream, &state).await,
            }
        });
    }
}

async fn answer_canned(mut client: TcpStream, response: &[u8], state: &State) {
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    state.canned_served.fetch_add(1, Ordering::SeqCst);
    let _ = client.write_all(response).await;
    let _ = client.shutdown().await;
}

async fn relay(client: TcpStream, upstream: SocketAddr, state: &State) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let awaiting = AtomicBool::new(false);
    let asked = || {
        if !awaiting.swap(true, Ordering::SeqCst) {
            let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            state.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        }
    };
    let answered = || {
        if awaiting.swap(false, Ordering::SeqCst) {
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let up = async {
        if state.buffer_requests {
            pump_requests(&mut client_read, &mut server_write, state, &asked).await;
        } else {
            pump(
                &mut client_read,
                &mut server_write,
                &state.up,
                (state.cut_up, &state.cut_up_done),
                state.upload_rate,
                &asked,
            )
            .await;
        }
    };
    let down = pump(
        &mut server_read,
        &mut client_write,
        &state.down,
        (state.cut_down, &state.cut_down_done),
        None,
        &answered,
    );
    // Either direction ending (end of stream or a cut) ends the connection.
    let cut = state.cut_now.notified();
    state.open.fetch_add(1, Ordering::SeqCst);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        () = cut => {}
    }
    state.open.fetch_sub(1, Ordering::SeqCst);
    answered();
}

async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    counter: &AtomicU64,
    (cut_at, cut_done): (Option<u64>, &AtomicBool),
    rate: Option<u64>,
    on_bytes: &(dyn Fn() + Sync),
) where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0_u8; 64 * 1024];
    let started = tokio::time::Instant::now();
    let mut carried = 0_u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        on_bytes();
        let before = counter.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(limit) = cut_at {
            if before + n as u64 >= limit && !cut_done.swap(true, Ordering::SeqCst) {
                let keep = usize::try_from(limit.saturating_sub(before))
                    .unwrap_or(n)
                    .min(n);
                let _ = to.write_all(&buf[..keep]).await;
                counter.fetch_sub((n - keep) as u64, Ordering::SeqCst);
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        carried += n as u64;
        if let Some(rate) = rate.filter(|r| *r > 0) {
            // Not ahead of the rate: wait until these bytes are due.
            let due = started + std::time::Duration::from_secs_f64(carried as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Reads whole HTTP requests (head, then a `Content-Length` body) from the client and forwards
/// each only when complete; a cut drops the request in progress.
async fn pump_requests<R, W>(
    from: &mut R,
    to: &mut W,
    state: &State,
    on_request: &(dyn Fn() + Sync),
) where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        // Complete requests in `pending` go out first.
        while let Some(len) = complete_request_len(&pending) {
            let request: Vec<u8> = pending.drain(..len).collect();
            on_request();
            if to.write_all(&request).await.is_err() {
                return;
            }
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let before = state.up.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(limit) = state.cut_up {
            if before + n as u64 >= limit && !state.cut_up_done.swap(true, Ordering::SeqCst) {
                // The request in progress is lost with the connection.
                let keep = usize::try_from(limit.saturating_sub(before))
                    .unwrap_or(n)
                    .min(n);
                state.up.fetch_sub((n - keep) as u64, Ordering::SeqCst);
                return;
            }
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// The length of the first request in `buf` when it is complete.
fn complete_request_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let body_len = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head_end + body_len).then_some(head_end + body_len)
}
