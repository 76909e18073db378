//! A minimal HTTP/1.1 GET over loopback, enough for the server's JSON endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{within, BenchError};

/// GETs `path` and parses the body as JSON; a status other than 200 is an error.
pub async fn get_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<serde_json::Value, BenchError> {
    within(Duration::from_secs(10), &format!("GET {path}"), async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(BenchError::io("connect"))?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes())
            .await
            .map_err(BenchError::io("send request"))?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw)
            .await
            .map_err(BenchError::io("read response"))?;
        parse_response(&String::from_utf8_lossy(&raw))
    })
    .await
}

fn parse_response(text: &str) -> Result<serde_json::Value, BenchError> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| BenchError::Protocol("HTTP response without a header end".into()))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(BenchError::Protocol(format!("HTTP {status}: {body}")));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    serde_json::from_str(&body).map_err(|e| BenchError::Protocol(format!("stats JSON: {e}")))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies_parse() {
        let plain = "HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n{\"connections\":0}";
        assert_eq!(parse_response(plain).unwrap()["connections"], 0);
        let chunked =
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap()["a"], 1);
    }

    #[test]
    fn non_200_is_an_error() {
        assert!(parse_response("HTTP/1.1 401 Unauthorized\r\n\r\nno").is_err());
    }
}
