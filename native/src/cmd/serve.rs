//! `aqn-native serve`: a small static file server for the browser playground (`www/`).
//!
//! 127.0.0.1 only (a secure context, so the page gets WebGPU), GET and HEAD, one thread per
//! connection, `Connection: close`. Paths are percent-decoded, must stay inside the folder
//! (`..` and anything that resolves outside it are refused with 403), and `/` serves
//! `index.html`. MIME types cover what the page loads (`.wasm` as `application/wasm`, which
//! `WebAssembly.instantiateStreaming` requires).
//!
//! Every request is bounded before it is read ([`Limits`]): a request line over 8 KiB gets 414,
//! a header section over 32 KiB or 100 lines 431, a request with a body 413 (GET and HEAD carry
//! none), a client that has not sent its whole request head within the timeout 408, and a
//! connection beyond the most served at once 503. No request can make the server hold more than
//! a few tens of KiB or a thread for longer than the timeout; refusals are answered by one
//! extra thread.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

/// Longest request line (`GET /target HTTP/1.1`), as most servers allow.
pub const MAX_REQUEST_LINE: usize = 8 << 10;
/// Largest header section (all header lines together).
pub const MAX_HEADER_BYTES: usize = 32 << 10;
/// Most header lines.
pub const MAX_HEADER_LINES: usize = 100;
/// Default time a client has to send its request line and headers.
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 10;
/// Default number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// How long a response write may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long writing the refusal of an extra connection may block the refusing thread.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The bounds every connection is served under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to receive the whole request head.
    pub request_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
}

/// Arguments of `serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// TCP port on 127.0.0.1 (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The folder to serve (build the page first: scripts/build_web.sh).
    #[arg(long, default_value = "www", value_name = "DIR")]
    dir: PathBuf,
    /// Seconds a client has to send its request line and headers (else 408), at least 1.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_REQUEST_TIMEOUT_S)]
    request_timeout: u64,
    /// Connections served at once (each on its own thread); more are answered 503, at least 1.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
}

/// The Content-Type of a file, by extension.
pub fn mime_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html") | Some("htm") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") | Some("map") => "application/json",
        Some("jsonl") => "application/x-ndjson",
        Some("wgsl") => "text/wgsl; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a request target maps to.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A file inside the root.
    File(PathBuf),
    /// Outside the root, or a path component that is not a plain name.
    Forbidden,
    /// No such file.
    NotFound,
}

/// Maps a request target (`/pkg/aqn_web.js?v=1`) to a file inside `root` (canonical).
pub fn resolve(root: &Path, target: &str) -> Resolved {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(decoded) = percent_decode(path) else {
        return Resolved::Forbidden;
    };
    let mut rel = PathBuf::new();
    for part in decoded.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." || part.contains('\\') || part.contains('\0') {
            return Resolved::Forbidden;
        }
        rel.push(part);
    }
    let mut full = root.join(&rel);
    if full.is_dir() {
        full.push("index.html");
    }
    match full.canonicalize() {
        // A symlink may still point outside: the canonical path must stay under the root.
        Ok(canon) if canon.starts_with(root) && canon.is_file() => Resolved::File(canon),
        Ok(_) => Resolved::Forbidden,
        Err(_) => Resolved::NotFound,
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()
}

/// Why a request head was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The request line is longer than [`MAX_REQUEST_LINE`] (414).
    LineTooLong,
    /// The headers exceed [`MAX_HEADER_BYTES`] or [`MAX_HEADER_LINES`] (431).
    HeadersTooLarge,
    /// The request announces a body (413).
    Body,
    /// The head did not arrive within the timeout (408).
    Timeout,
    /// The client closed the connection or the socket failed (no response).
    Closed,
}

impl HeadError {
    /// The status line and the plain-text reason sent back (`None`: nobody to answer).
    pub fn response(&self) -> Option<(&'static str, String)> {
        match self {
            HeadError::LineTooLong => Some((
                "414 URI Too Long",
                format!("the request line exceeds {MAX_REQUEST_LINE} bytes\n"),
            )),
            HeadError::HeadersTooLarge => Some((
                "431 Request Header Fields Too Large",
                format!(
                    "the headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADER_LINES} lines\n"
                ),
            )),
            HeadError::Body => Some((
                "413 Content Too Large",
                "GET and HEAD requests carry no body\n".into(),
            )),
            HeadError::Timeout => Some((
                "408 Request Timeout",
                "the request head did not arrive in time\n".into(),
            )),
            HeadError::Closed => None,
        }
    }
}

/// Reads one line (up to and including `\n`) of at most `max` bytes into `out`, every read
/// bounded by `deadline`.
fn read_line_bounded(
    reader: &mut BufReader<TcpStream>,
    max: usize,
    deadline: Instant,
    too_long: HeadError,
    out: &mut Vec<u8>,
) -> Result<(), HeadError> {
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(HeadError::Timeout)?;
        reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Closed)?;
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::Timeout);
            }
            Err(_) => return Err(HeadError::Closed),
        };
        if buf.is_empty() {
            return Err(HeadError::Closed);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > max {
            return Err(too_long);
        }
        out.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Reads the request line and the headers within `timeout`; returns the request line.
pub fn read_head(
    reader: &mut BufReader<TcpStream>,
    timeout: Duration,
) -> Result<String, HeadError> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    read_line_bounded(
        reader,
        MAX_REQUEST_LINE,
        deadline,
        HeadError::LineTooLong,
        &mut line,
    )?;
    let (mut header_bytes, mut header_lines) = (0usize, 0usize);
    loop {
        let mut header = Vec::new();
        read_line_bounded(
            reader,
            MAX_HEADER_BYTES - header_bytes,
            deadline,
            HeadError::HeadersTooLarge,
            &mut header,
        )?;
        if header == b"\r\n" || header == b"\n" {
            break;
        }
        header_bytes += header.len();
        header_lines += 1;
        if header_lines > MAX_HEADER_LINES {
            return Err(HeadError::HeadersTooLarge);
        }
        let text = String::from_utf8_lossy(&header);
        if let Some((name, value)) = text.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            let body = (name == "content-length" && value != "0")
                || (name == "transfer-encoding" && !value.is_empty());
            if body {
                return Err(HeadError::Body);
            }
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn handle(mut stream: TcpStream, root: &Path, limits: &Limits) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let line = match read_head(&mut reader, limits.request_timeout) {
        Ok(line) => line,
        Err(e) => {
            if let Some((status, text)) = e.response() {
                respond(&mut stream, status, "text/plain", text.as_bytes(), false)?;
                linger_close(&mut stream, &mut reader);
            }
            return Ok(());
        }
    };
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head = method == "HEAD";
    if method != "GET" && !head {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET or HEAD only\n",
            false,
        );
    }
    match resolve(root, target) {
        Resolved::File(path) => match std::fs::read(&path) {
            Ok(body) => respond(&mut stream, "200 OK", mime_type(&path), &body, head),
            Err(_) => respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                head,
            ),
        },
        Resolved::Forbidden => respond(
            &mut stream,
            "403 Forbidden",
            "text/plain",
            b"outside the served folder\n",
            head,
        ),
        Resolved::NotFound => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"not found\n",
            head,
        ),
    }
}

/// Most bytes discarded after a refusal, so the client reads the response rather than a reset.
const LINGER_BYTES: usize = 1 << 20;
/// Longest wait for those bytes.
const LINGER_TIME: Duration = Duration::from_millis(500);

/// Closes our side and discards what the client is still sending (bounded in bytes and time):
/// closing a socket with unread input makes the kernel reset the connection, which can destroy
/// the refusal before the client reads it.
fn linger_close(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>) {
    use std::io::Read;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(LINGER_TIME));
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 8192];
    let mut seen = 0;
    while seen < LINGER_BYTES && Instant::now() < deadline {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen += n,
        }
    }
}

/// Decrements the count of open connections when the connection's thread ends.
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Refusals queued for the refusing thread at most; beyond that an extra connection is closed
/// without an answer.
const MAX_PENDING_REFUSALS: usize = 64;

/// Answers 503 to the connections handed to it, one at a time on one thread (lingering briefly
/// so the client reads the answer), so refusing never holds more than one extra thread.
fn refuser(connections: std::sync::mpsc::Receiver<TcpStream>, max_connections: usize) {
    let text =
        format!("the server is busy: {max_connections} connections are open (--max-connections)\n");
    for mut stream in connections {
        let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
        if respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            text.as_bytes(),
            false,
        )
        .is_ok()
            && let Ok(clone) = stream.try_clone()
        {
            linger_close(&mut stream, &mut BufReader::new(clone));
        }
    }
}

/// Serves `root` on `listener` until the process ends: one thread per connection, at most
/// `limits.max_connections` at once (the others get 503 from one refusing thread and are
/// closed).
pub fn serve(listener: TcpListener, root: PathBuf, limits: Limits) {
    let open = Arc::new(AtomicUsize::new(0));
    let (refuse, refusals) = std::sync::mpsc::sync_channel(MAX_PENDING_REFUSALS);
    std::thread::spawn(move || refuser(refusals, limits.max_connections));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if open.load(Ordering::SeqCst) >= limits.max_connections {
            // A full queue drops the connection: closing it is the cheapest refusal.
            let _ = refuse.try_send(stream);
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let slot = ConnectionSlot(open.clone());
        let root = root.clone();
        std::thread::spawn(move || {
            let _slot = slot;
            // A client that hangs up mid-response is not the server's problem.
            let _ = handle(stream, &root, &limits);
        });
    }
}

/// Runs `serve` until killed.
pub fn run(args: ServeArgs) -> Result<()> {
    if args.request_timeout == 0 {
        bail!("--request-timeout 0: a client needs at least 1 second to send its request");
    }
    if args.max_connections == 0 {
        bail!("--max-connections 0: the server would refuse every connection");
    }
    let root = args
        .dir
        .canonicalize()
        .with_context(|| format!("the folder to serve, {}", args.dir.display()))?;
    if !root.join("index.html").is_file() {
        anyhow::bail!(
            "{} has no index.html (build the page with scripts/build_web.sh)",
            root.display()
        );
    }
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    println!("serving {} on http://{addr}/", root.display());
    std::io::stdout().flush()?;
    serve(
        listener,
        root,
        Limits {
            request_timeout: Duration::from_secs(args.request_timeout),
            max_connections: args.max_connections,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_and_refuses_outside() {
        let dir = std::env::temp_dir().join(format!("aqn-serve-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        std::fs::write(dir.join("index.html"), "<html>").unwrap();
        std::fs::write(dir.join("pkg/a b.wasm"), [0u8, 97, 115, 109]).unwrap();
        let root = dir.canonicalize().unwrap();
        assert_eq!(resolve(&root, "/"), Resolved::File(root.join("index.html")));
        assert_eq!(
            resolve(&root, "/index.html?x=1#y"),
            Resolved::File(root.join("index.html"))
        );
        assert_eq!(
            resolve(&root, "/pkg/a%20b.wasm"),
            Resolved::File(root.join("pkg/a b.wasm"))
        );
        assert_eq!(resolve(&root, "/../etc/passwd"), Resolved::Forbidden);
        assert_eq!(resolve(&root, "/pkg/%2e%2e/%2e%2e/x"), Resolved::Forbidden);
        assert_eq!(resolve(&root, "/%zz"), Resolved::Forbidden);
        assert_eq!(resolve(&root, "/nope.js"), Resolved::NotFound);
        assert_eq!(mime_type(Path::new("x.wasm")), "application/wasm");
        assert_eq!(
            mime_type(Path::new("x.JS")),
            "text/javascript; charset=utf-8"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A server on a free port with `limits`, serving a folder with one file.
    fn start(limits: Limits) -> std::net::SocketAddr {
        let dir = std::env::temp_dir().join(format!("aqn-serve-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<html>").unwrap();
        let root = dir.canonicalize().unwrap();
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, root, limits));
        addr
    }

    fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        use std::io::Read;
        let mut s = TcpStream::connect(addr).unwrap();
        // The server may answer (and close) before the whole request is written.
        let _ = s.write_all(request);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn oversized_and_slow_requests_are_refused() {
        let addr = start(Limits {
            request_timeout: Duration::from_millis(500),
            max_connections: 4,
        });
        assert!(
            exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 200 OK")
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert!(exchange(addr, long.as_bytes()).starts_with("HTTP/1.1 414"));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X-A: b\r\n".repeat(MAX_HEADER_LINES + 1)
        );
        assert!(exchange(addr, many.as_bytes()).starts_with("HTTP/1.1 431"));
        let big = format!(
            "GET / HTTP/1.1\r\nX-A: {}\r\n\r\n",
            "b".repeat(MAX_HEADER_BYTES)
        );
        assert!(exchange(addr, big.as_bytes()).starts_with("HTTP/1.1 431"));
        let body = b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert!(exchange(addr, body).starts_with("HTTP/1.1 413"));
        let t0 = Instant::now();
        assert!(exchange(addr, b"GET / HTTP/1.1\r\n").starts_with("HTTP/1.1 408"));
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn connections_beyond_the_limit_get_503() {
        use std::io::Read;
        let addr = start(Limits {
            // Long enough that a loaded machine cannot let a held request expire before the
            // third connection arrives.
            request_timeout: Duration::from_secs(5),
            max_connections: 2,
        });
        // Two half-sent requests hold both slots.
        let held: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        assert!(exchange(addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
        // They time out with 408, and the slots are free again.
        for mut s in held {
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        }
        // Their threads end once the clients hang up: poll rather than guess how long that takes.
        let mut answer = String::new();
        for _ in 0..100 {
            answer = exchange(addr, b"GET / HTTP/1.1\r\n\r\n");
            if !answer.starts_with("HTTP/1.1 503") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }
}
