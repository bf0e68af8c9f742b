//! A small HTTP/1.1 server for the misbehaving parts of the test world (the hostile registry,
//! the fronts, the token server): it answers each request through a handler, and can answer
//! in ways no honest server does (a body that never ends, one that trickles a byte at a time,
//! a connection accepted and never answered). It logs every request it gets, headers and all,
//! so that tests can see what a client sent where.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// A request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path with its query.
    pub target: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    /// A query parameter, decoded.
    pub fn query(&self, key: &str) -> Option<String> {
        let url = reqwest::Url::parse(&format!("http://x{}", self.target)).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response body.
pub enum Body {
    /// These bytes.
    Bytes(Vec<u8>),
    /// This many zero bytes, with their length announced.
    Zeros(u64),
    /// Bytes forever, no length announced.
    Endless,
    /// This many zero bytes, no length announced (the connection closes after them).
    Unannounced(u64),
    /// These bytes one at a time, `every` apart, no length announced.
    Trickle {
        /// The bytes.
        bytes: Vec<u8>,
        /// The pause between two bytes.
        every: Duration,
    },
    /// Pieces from a channel, with the length when it is known (else chunked).
    Stream {
        /// The pieces.
        pieces: mpsc::Receiver<Vec<u8>>,
        /// The whole length, when known.
        len: Option<u64>,
    },
}

/// A response.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers (the framing ones are added from the body).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A response with no body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// A JSON body.
    #[must_use]
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(Body::Bytes(value.to_string().into_bytes()))
    }
}

/// What the server does with a request.
pub enum Reply {
    /// Answers.
    Send(Response),
    /// Holds the connection open and never answers.
    Hang,
    /// Closes the connection without a word.
    Close,
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Self::Send(r)
    }
}

/// A future a handler returns.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
type Handler = Arc<dyn Fn(Request) -> ReplyFuture + Send + Sync>;

/// A request as logged: what a client sent.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The method.
    pub method: String,
    /// The path with its query.
    pub target: String,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body's length.
    pub body_len: usize,
    /// When the whole request had come.
    pub at: std::time::Instant,
}

impl Logged {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running server on a free loopback port; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server whose `handler` answers every request.
    pub fn start(handler: impl Fn(Request) -> ReplyFuture + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0", Arc::new(handler))
    }

    /// Starts a server whose `handler` answers at once.
    pub fn start_sync(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let handler = Arc::new(handler);
        Self::start(move |request| {
            let reply = handler(&request);
            Box::pin(async move { reply })
        })
    }

    fn start_on(bind: &str, handler: Handler) -> Self {
        let listener = std::net::TcpListener::bind(bind).expect("bind test server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("server address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let thread_log = Arc::clone(&log);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = stopped => {}
                    () = accept_loop(listener, handler, thread_log) => {}
                }
            });
            rt.shutdown_background();
        });
        Self {
            addr,
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, handler: Handler, log: Arc<Mutex<Vec<Logged>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (handler, log) = (Arc::clone(&handler), Arc::clone(&log));
        tokio::spawn(async move { serve(stream, handler, log).await });
    }
}

/// Answers the requests of one connection until it closes.
async fn serve(stream: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Logged>>>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let Some(request) = read_request(&mut read).await else {
            return;
        };
        log.lock().expect("log lock").push(Logged {
            at: std::time::Instant::now(),
            method: request.method.clone(),
            target: request.target.clone(),
            headers: request.headers.clone(),
            body_len: request.body.len(),
        });
        if request.method == "TLS" {
            let _ = write
                .write_all(
                    b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\nplain HTTP only\n",
                )
                .await;
            return;
        }
        let head_only = request.method == "HEAD";
        match handler(request).await {
            Reply::Send(response) => {
                if !write_response(&mut write, response, head_only).await {
                    return;
                }
            }
            Reply::Hang => {
                // Keep the connection until the client gives up.
                let mut sink = [0_u8; 1024];
                while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Reply::Close => return,
        }
    }
}

async fn read_line<R: AsyncRead + Unpin>(read: &mut BufReader<R>) -> Option<String> {
    let mut line = Vec::new();
    loop {
        let byte = read.read_u8().await.ok()?;
        line.push(byte);
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
            return String::from_utf8(line).ok();
        }
        if line.len() > 64 * 1024 {
            return None;
        }
    }
}

async fn read_request<R: AsyncRead + Unpin>(read: &mut BufReader<R>) -> Option<Request> {
    // A TLS handshake (a client trying HTTPS first, as skopeo does) gets a plain refusal at
    // once, so that it falls back to HTTP.
    if read.fill_buf().await.ok()?.first() == Some(&0x16) {
        return Some(Request {
            method: "TLS".into(),
            target: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        });
    }
    let first = read_line(read).await?;
    let mut parts = first.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let line = read_line(read).await?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = read_line(read).await?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !read_line(read).await?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            read.read_exact(&mut body[start..]).await.ok()?;
            read_line(read).await?;
        }
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        read.read_exact(&mut body).await.ok()?;
    }
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes `response`; `false` when the connection must close after it.
async fn write_response<W: AsyncWrite + Unpin>(
    write: &mut W,
    response: Response,
    head_only: bool,
) -> bool {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let keep_alive = match &response.body {
        Body::Bytes(b) => {
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
            true
        }
        Body::Zeros(n) => {
            head.push_str(&format!("Content-Length: {n}\r\n"));
            true
        }
        Body::Stream { len: Some(n), .. } => {
            head.push_str(&format!("Content-Length: {n}\r\n"));
            true
        }
        Body::Stream { len: None, .. } => {
            head.push_str("Transfer-Encoding: chunked\r\n");
            true
        }
        Body::Endless | Body::Unannounced(_) | Body::Trickle { .. } => {
            head.push_str("Connection: close\r\n");
            false
        }
    };
    head.push_str("\r\n");
    if write.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    if head_only {
        return keep_alive && write.flush().await.is_ok();
    }
    let written = match response.body {
        Body::Bytes(b) => write.write_all(&b).await.is_ok(),
        Body::Zeros(n) => write_zeros(write, Some(n)).await,
        Body::Endless => write_zeros(write, None).await,
        Body::Unannounced(n) => write_zeros(write, Some(n)).await,
        Body::Trickle { bytes, every } => {
            for b in bytes {
                if write.write_all(&[b]).await.is_err() || write.flush().await.is_err() {
                    return false;
                }
                tokio::time::sleep(every).await;
            }
            true
        }
        Body::Stream { mut pieces, len } => {
            let mut ok = true;
            while let Some(piece) = pieces.recv().await {
                let sent = if len.is_some() {
                    write.write_all(&piece).await
                } else if piece.is_empty() {
                    Ok(())
                } else {
                    let framed = [
                        format!("{:x}\r\n", piece.len()).into_bytes(),
                        piece,
                        b"\r\n".to_vec(),
                    ]
                    .concat();
                    write.write_all(&framed).await
                };
                if sent.is_err() {
                    ok = false;
                    break;
                }
            }
            if ok && len.is_none() {
                ok = write.write_all(b"0\r\n\r\n").await.is_ok();
            }
            ok
        }
    };
    written && keep_alive && write.flush().await.is_ok()
}

/// `n` zero bytes (forever when `None`), in 64 KiB pieces.
async fn write_zeros<W: AsyncWrite + Unpin>(write: &mut W, n: Option<u64>) -> bool {
    let piece = vec![0_u8; 64 * 1024];
    let mut left = n;
    loop {
        let len = match left {
            Some(0) => return true,
            Some(l) => usize::try_from(l.min(piece.len() as u64)).unwrap_or(piece.len()),
            None => piece.len(),
        };
        if write.write_all(&piece[..len]).await.is_err() {
            return false;
        }
        if let Some(l) = &mut left {
            *l -= len as u64;
        }
    }
}
