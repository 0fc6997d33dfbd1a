//! `aqn-native serve`: a small static file server for the browser playground (`www/`).
//!
//! 127.0.0.1 only (a secure context, so the page gets WebGPU), GET and HEAD, one thread per
//! connection, `Connection: close`. Paths are percent-decoded, must stay inside the folder
//! (`..` and anything that resolves outside it are refused with 403), and `/` serves
//! `index.html`. MIME types cover what the page loads (`.wasm` as `application/wasm`, which
//! `WebAssembly.instantiateStreaming` requires).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

/// Arguments of `serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// TCP port on 127.0.0.1 (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The folder to serve (build the page first: scripts/build_web.sh).
    #[arg(long, default_value = "www", value_name = "DIR")]
    dir: PathBuf,
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

fn handle(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Drain the headers (the server needs none of them).
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
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

/// Runs `serve` until killed.
pub fn run(args: ServeArgs) -> Result<()> {
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
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let root = root.clone();
        std::thread::spawn(move || {
            // A client that hangs up mid-response is not the server's problem.
            let _ = handle(stream, &root);
        });
    }
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
}
