//! Consumers of the change stream for the tests and the benchmark: the pull API, an SSE
//! reader, a WebSocket reader, the checks every consumer's events must pass, and a
//! nats-server of the test's own.
#![allow(dead_code)]

use super::fhir::FhirClient;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every event after `since` through the pull API, following `next` to the head.
pub fn pull_all(fhir: &FhirClient, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut since = 0;
    loop {
        let reply = fhir.get(&format!("$changes?since={since}&_count=500{query}"));
        reply.expect(200, "pull");
        let page = reply.json();
        let page_events = page["events"].as_array().expect("events").clone();
        let next = page["next"].as_u64().expect("next");
        events.extend(page_events);
        if next == since {
            return events;
        }
        since = next;
    }
}

/// The seq of an event.
pub fn seq(event: &Value) -> u64 {
    event["id"].as_str().expect("id").parse().expect("a seq")
}

/// What an SSE read ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `stop` said so.
    Stopped,
    /// The server said `event: reconnect`.
    Reconnect(u64),
    /// The connection ended.
    Closed,
}

/// Reads the SSE stream at `url` (with `Last-Event-ID: last` when given), calling `on_event`
/// with each event until it returns false. A server that cannot be reached is [`Ended::Closed`].
pub fn read_sse(url: &str, last: Option<u64>, mut on_event: impl FnMut(Value) -> bool) -> Ended {
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("client");
    let mut request = client.get(url).header("Accept", "text/event-stream");
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let Ok(response) = request.send() else {
        return Ended::Closed;
    };
    assert_eq!(response.status(), 200, "SSE status");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (mut id, mut event, mut data) = (None::<String>, None::<String>, String::new());
    for line in BufReader::new(response).lines() {
        let Ok(line) = line else {
            return Ended::Closed;
        };
        if line.is_empty() {
            match event.take().as_deref() {
                Some("reconnect") => {
                    let since: Value = serde_json::from_str(&data).expect("reconnect data");
                    return Ended::Reconnect(since["since"].as_u64().expect("since"));
                }
                Some(other) => panic!("unexpected SSE event {other}: {data}"),
                None if !data.is_empty() => {
                    let value: Value = serde_json::from_str(&data).expect("event JSON");
                    assert_eq!(
                        id.as_deref(),
                        value["id"].as_str(),
                        "SSE id is the event id"
                    );
                    if !on_event(value) {
                        return Ended::Stopped;
                    }
                }
                None => {}
            }
            id = None;
            data.clear();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.to_string());
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_string());
        }
    }
    Ended::Closed
}

/// Reads the WebSocket stream at `url` (`ws://...`), calling `on_event` with each event until it
/// returns false; a close from the server ends it too.
pub fn read_websocket(url: &str, mut on_event: impl FnMut(Value) -> bool) -> Ended {
    let (mut socket, _) = tungstenite::connect(url).expect("WebSocket connect");
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("event JSON");
                if !on_event(value) {
                    let _ = socket.close(None);
                    return Ended::Stopped;
                }
            }
            Ok(tungstenite::Message::Close(frame)) => {
                let since = frame
                    .and_then(|f| f.reason.strip_prefix("since=").and_then(|s| s.parse().ok()));
                return since.map_or(Ended::Closed, Ended::Reconnect);
            }
            Ok(_) => {}
            Err(_) => return Ended::Closed,
        }
    }
}

/// Asserts that `events`, after de-duplication by id (the first of each kept), are exactly
/// `expected` (ids), in order.
pub fn assert_exactly(events: &[Value], expected: &[u64], what: &str) {
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<u64> = events
        .iter()
        .map(seq)
        .filter(|id| seen.insert(*id))
        .collect();
    assert_eq!(ids.len(), expected.len(), "{what}: how many events");
    assert_eq!(ids, expected, "{what}: the events, in order");
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A nats-server with JetStream on a port and a store directory of its own, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server` (tests/setup.sh installs it) and waits until it listens.
    pub fn start(store: &Path) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store: store.to_path_buf(),
        };
        server.restart();
        server
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nats-server cannot be started ({e}): run tests/setup.sh, which installs it")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The messages of JetStream stream `stream` at `url`: `(Nats-Msg-Id, payload)` in stream
/// order, without those deleted from it.
pub fn stream_messages(url: &str, stream: &str) -> Vec<(u64, Value)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect to NATS");
        let context = async_nats::jetstream::new(client);
        let mut stream = context.get_stream(stream).await.expect("the stream");
        let state = stream.info().await.expect("stream info").state.clone();
        let mut out = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            // A message deleted from the stream (an erased version's) leaves a gap.
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let id = message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .expect("Nats-Msg-Id")
                .as_str()
                .parse()
                .expect("a seq");
            out.push((id, serde_json::from_slice(&message.payload).expect("JSON")));
        }
        out
    })
}
