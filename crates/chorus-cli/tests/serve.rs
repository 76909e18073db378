//! `chorus serve` as a process: it serves a WebSocket, and SIGTERM drains it with close 1001
//! (CONN-19). Std only: a minimal WebSocket client over a raw TCP stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_server(port: u16, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--memory",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chorus serve starts")
}

fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("server did not listen: {e}"),
        }
    }
}

/// Upgrades to a WebSocket (no token: the server runs with --dev).
fn upgrade(port: u16) -> BufReader<TcpStream> {
    let mut stream = connect(port);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: chorus.v1\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return reader;
        }
    }
}

/// Reads one server message (servers do not mask): (opcode, payload), its fragments
/// reassembled (a long text message may leave as a text frame and continuations).
fn read_frame(reader: &mut BufReader<TcpStream>) -> (u8, Vec<u8>) {
    let (fin, opcode, mut payload) = read_one_frame(reader);
    let mut fin = fin;
    while !fin {
        let (last, continuation, more) = read_one_frame(reader);
        assert_eq!(continuation, 0, "a continuation frame");
        payload.extend(more);
        fin = last;
    }
    (opcode, payload)
}

/// Reads one frame: (FIN, opcode, payload).
fn read_one_frame(reader: &mut BufReader<TcpStream>) -> (bool, u8, Vec<u8>) {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).unwrap();
    let fin = head[0] & 0x80 != 0;
    let opcode = head[0] & 0x0f;
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            reader.read_exact(&mut ext).unwrap();
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            reader.read_exact(&mut ext).unwrap();
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).unwrap();
    (fin, opcode, payload)
}

#[test]
fn sigterm_closes_connections_with_1001_and_exits() {
    let port = free_port();
    let mut server = spawn_server(port, &["--dev"]);
    let mut ws = upgrade(port);
    let (opcode, welcome) = read_frame(&mut ws);
    assert_eq!(opcode, 1, "text frame");
    assert!(String::from_utf8(welcome)
        .unwrap()
        .starts_with(r#"{"type":"welcome""#));

    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let (opcode, payload) = read_frame(&mut ws);
    assert_eq!(opcode, 8, "close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = server.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refuses_to_start_without_a_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["serve", "--memory", "--port", "0"])
        .env_remove("CHORUS_JWT_SECRET")
        .env_remove("CHORUS_DEV")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no JWT secret configured"));
}
