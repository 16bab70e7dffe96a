//! An HTTP receiver of rest-hook notifications for the tests (`tests/subscriptions.rs`,
//! `tests/erasure.rs`): it answers 500 to its first calls, then 200, and records what it
//! accepted.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// One notification as received: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Notification {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// An HTTP receiver that answers 500 to its first `fail` calls, then 200, and records the
/// notifications it accepted.
pub struct Receiver {
    pub url: String,
    pub accepted: Arc<Mutex<Vec<Notification>>>,
    pub calls: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start(fail: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        thread::spawn({
            let (accepted, calls) = (accepted.clone(), calls.clone());
            move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    // Keep-alive connections: one request after the other.
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        assert!(line.starts_with("POST /hook "), "{line}");
                        let mut headers = HashMap::new();
                        loop {
                            let mut header = String::new();
                            reader.read_line(&mut header).unwrap();
                            let header = header.trim_end();
                            if header.is_empty() {
                                break;
                            }
                            let (name, value) = header.split_once(':').unwrap();
                            headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
                        }
                        let length: usize = headers
                            .get("content-length")
                            .map_or(0, |l| l.parse().unwrap());
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let call = calls.fetch_add(1, Ordering::SeqCst);
                        let status = if call < fail {
                            "500 Internal Server Error"
                        } else {
                            accepted
                                .lock()
                                .unwrap()
                                .push(Notification { headers, body });
                            "200 OK"
                        };
                        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                        if stream.write_all(answer.as_bytes()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Receiver {
            url,
            accepted,
            calls,
        }
    }

    /// The `ce-id`s of the accepted notifications, in order of arrival.
    pub fn ids(&self) -> Vec<u64> {
        let accepted = self.accepted.lock().unwrap();
        accepted
            .iter()
            .map(|n| n.headers["ce-id"].parse().unwrap())
            .collect()
    }
}
