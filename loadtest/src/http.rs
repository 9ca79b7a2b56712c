//! A deliberately small HTTP/1.1 client: one keep-alive connection, one request at a
//! time, reusable buffers. It does what a load generator needs and no more, so that
//! the client spends as little CPU per request as possible and leaves the cores to
//! the server under test.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head the client accepts.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Largest response body the client accepts (a page of 1,000 orders fits).
const BODY_BYTES_MAX: usize = 256 * 1024 * 1024;

#[derive(Debug)]
pub enum HttpError {
    Timeout,
    Io(std::io::Error),
    /// The server closed the connection before any byte of the answer.
    Closed,
    Protocol(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Timeout => write!(f, "timed out"),
            HttpError::Io(e) => write!(f, "io: {e}"),
            HttpError::Closed => write!(f, "connection closed by the server"),
            HttpError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    pub tenant: String,
    pub key: Option<String>,
    pub timeout: Duration,
}

impl Target {
    /// From `http://host:port[/]`.
    pub fn parse(url: &str, tenant: &str, key: Option<String>, timeout: Duration) -> Option<Self> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            return None;
        }
        Some(Target {
            addr: addr.to_owned(),
            tenant: tenant.to_owned(),
            key,
            timeout,
        })
    }

    /// The fixed part of every request head after the request line.
    fn common_headers(&self) -> String {
        let mut head = format!("Host: {}\r\nX-Tenant: {}\r\n", self.addr, self.tenant);
        if let Some(key) = &self.key {
            let _ = write!(head, "Authorization: Bearer {key}\r\n");
        }
        head
    }
}

/// A response whose body lives in the connection's buffer until the next request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Response {
    pub status: u16,
    body_start: usize,
    body_end: usize,
}

/// One keep-alive connection.
pub struct Conn {
    target: Target,
    headers: String,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes of `buf` already read past the previous response (never with pipelining
    /// off, but kept correct).
    filled: usize,
    consumed: usize,
}

impl Conn {
    pub fn new(target: &Target) -> Self {
        Conn {
            headers: target.common_headers(),
            target: target.clone(),
            stream: None,
            out: Vec::with_capacity(1024),
            buf: vec![0; 16 * 1024],
            filled: 0,
            consumed: 0,
        }
    }

    pub fn body(&self, r: &Response) -> &[u8] {
        &self.buf[r.body_start..r.body_end]
    }

    /// Sends one request and reads its response, reconnecting first if needed; on any
    /// error (timeout included) the connection is dropped so the next call starts afresh.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let timeout = self.target.timeout;
        let reused = self.stream.is_some();
        let mut attempt = tokio::time::timeout(timeout, self.exchange(method, path, body)).await;
        if reused && matches!(attempt, Ok(Err(HttpError::Closed))) {
            // A server may close an idle keep-alive connection at any time; the request
            // never reached it, so it is sent again once on a new connection.
            self.stream = None;
            attempt = tokio::time::timeout(timeout, self.exchange(method, path, body)).await;
        }
        match attempt {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(HttpError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Response, HttpError> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.target.addr)
                .await
                .map_err(HttpError::Io)?;
            stream.set_nodelay(true).map_err(HttpError::Io)?;
            self.stream = Some(stream);
            self.filled = 0;
            self.consumed = 0;
        }
        self.out.clear();
        self.out.extend_from_slice(method.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(path.as_bytes());
        self.out.extend_from_slice(b" HTTP/1.1\r\n");
        self.out.extend_from_slice(self.headers.as_bytes());
        if !body.is_empty() || method != "GET" {
            self.out
                .extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
            // Writing into a Vec cannot fail, and formatting a number does not allocate.
            let _ = std::io::Write::write_fmt(&mut self.out, format_args!("{}\r\n", body.len()));
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        let stream = self.stream.as_mut().expect("connected above");
        stream
            .write_all(&self.out)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                    HttpError::Closed
                }
                _ => HttpError::Io(e),
            })?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> Result<Response, HttpError> {
        // Move any bytes after the previous response to the front.
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf[..self.filled]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let mut length = None;
                    let mut chunked = false;
                    let mut close = false;
                    for h in parsed.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    let response = if chunked {
                        self.read_chunked(status, head_len).await?
                    } else {
                        let length = length.unwrap_or(0);
                        if length > BODY_BYTES_MAX {
                            return Err(HttpError::Protocol(format!("body of {length} bytes")));
                        }
                        self.fill_to(head_len + length).await?;
                        self.consumed = head_len + length;
                        Response {
                            status,
                            body_start: head_len,
                            body_end: head_len + length,
                        }
                    };
                    if close {
                        self.stream = None;
                    }
                    return Ok(response);
                }
                Ok(httparse::Status::Partial) => {
                    if self.filled >= HEAD_BYTES_MAX {
                        return Err(HttpError::Protocol("response head too large".into()));
                    }
                    self.read_more().await?;
                }
                Err(e) => return Err(HttpError::Protocol(e.to_string())),
            }
        }
    }

    /// Reads at least one more byte into `buf`, growing it when full.
    async fn read_more(&mut self) -> Result<(), HttpError> {
        if self.filled == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| HttpError::Protocol("not connected".into()))?;
        let n = stream
            .read(&mut self.buf[self.filled..])
            .await
            .map_err(HttpError::Io)?;
        if n == 0 {
            return Err(if self.filled == self.consumed {
                HttpError::Closed
            } else {
                HttpError::Protocol("connection closed in the middle of an answer".into())
            });
        }
        self.filled += n;
        Ok(())
    }

    async fn fill_to(&mut self, end: usize) -> Result<(), HttpError> {
        if self.buf.len() < end {
            self.buf.resize(end.next_power_of_two(), 0);
        }
        while self.filled < end {
            self.read_more().await?;
        }
        Ok(())
    }

    /// Reads a chunked body and compacts it in place after the head.
    async fn read_chunked(&mut self, status: u16, head_len: usize) -> Result<Response, HttpError> {
        let mut read_at = head_len;
        let mut write_at = head_len;
        loop {
            let line_end = loop {
                if let Some(i) = find_crlf(&self.buf[read_at..self.filled]) {
                    break read_at + i;
                }
                self.read_more().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[read_at..line_end])
                .map_err(|_| HttpError::Protocol("bad chunk size".into()))?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| HttpError::Protocol("bad chunk size".into()))?;
            let data_start = line_end + 2;
            if write_at - head_len + size > BODY_BYTES_MAX {
                return Err(HttpError::Protocol("chunked body too large".into()));
            }
            self.fill_to(data_start + size + 2).await?;
            if size == 0 {
                // No trailers are expected from the server.
                self.consumed = data_start + 2;
                return Ok(Response {
                    status,
                    body_start: head_len,
                    body_end: write_at,
                });
            }
            self.buf
                .copy_within(data_start..data_start + size, write_at);
            write_at += size;
            read_at = data_start + size + 2;
        }
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// The value of the first `"key":` in a JSON text, as the raw bytes up to the next
/// `,` or `}` (strings keep their quotes). A fast path for the few fields the hot loop
/// reads from an order; the audit parses fully.
pub fn json_field<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let needle_len = key.len() + 3;
    let start = body.windows(needle_len).position(|w| {
        w[0] == b'"' && &w[1..=key.len()] == key.as_bytes() && w[key.len() + 1..] == *b"\":"
    })? + needle_len;
    let rest = &body[start..];
    let end = if rest.first() == Some(&b'"') {
        1 + rest[1..].iter().position(|&b| b == b'"')? + 1
    } else {
        rest.iter().position(|&b| b == b',' || b == b'}')?
    };
    Some(&rest[..end])
}

/// A string field without its quotes.
pub fn json_str<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let raw = json_field(body, key)?;
    raw.strip_prefix(b"\"")?.strip_suffix(b"\"")
}

/// An integer field.
pub fn json_i64(body: &[u8], key: &str) -> Option<i64> {
    std::str::from_utf8(json_field(body, key)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// GET a path and parse the JSON answer (for set-up and the audit, not the hot loop).
pub async fn get_json(conn: &mut Conn, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    send_json(conn, "GET", path, b"").await
}

/// Send a body and parse the JSON answer.
pub async fn send_json(
    conn: &mut Conn,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, serde_json::Value)> {
    let r = conn
        .request(method, path, body)
        .await
        .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
    let bytes = conn.body(&r);
    let value = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{method} {path}: answer {} is not JSON: {e}: {}",
                r.status,
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )
        })?
    };
    Ok((r.status, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers one request per connection and then closes it, as a
    /// server does with an idle keep-alive connection.
    async fn one_answer_per_connection(listener: tokio::net::TcpListener, connections: usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await.expect("read");
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
            stream.write_all(answer).await.expect("write");
            drop(stream);
        }
    }

    #[tokio::test]
    async fn a_closed_keep_alive_connection_is_reopened_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(one_answer_per_connection(listener, 2));
        let target = Target::parse(&addr, "default", None, Duration::from_secs(5)).expect("target");
        let mut conn = Conn::new(&target);
        assert_eq!(
            conn.request("GET", "/a", b"").await.expect("first").status,
            200
        );
        // The server has closed the first connection; the next request must not fail.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            conn.request("PUT", "/b", b"{}")
                .await
                .expect("second")
                .status,
            200
        );
        server.await.expect("server");
    }

    #[test]
    fn fields_are_found_at_any_depth_first_match() {
        let body = br#"{"backorder":false,"client_order_id":"x-1","id":42,"lines":[{"sku":"S1"}],"status":"held","total":-7}"#;
        assert_eq!(json_i64(body, "id"), Some(42));
        assert_eq!(json_str(body, "status"), Some(&b"held"[..]));
        assert_eq!(json_i64(body, "total"), Some(-7));
        assert_eq!(json_str(body, "client_order_id"), Some(&b"x-1"[..]));
        assert_eq!(json_i64(body, "nope"), None);
    }

    #[test]
    fn targets_parse_with_or_without_scheme() {
        let t = Target::parse(
            "http://127.0.0.1:80/",
            "default",
            None,
            Duration::from_secs(1),
        );
        assert_eq!(t.map(|t| t.addr), Some("127.0.0.1:80".to_owned()));
        assert!(Target::parse("http://h/x", "d", None, Duration::from_secs(1)).is_none());
    }
}
