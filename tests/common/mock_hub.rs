//! A Hugging Face hub on loopback, enough for `hf-hub`'s client: the repo's file list
//! (`/api/models/{repo}/revision/main`) and `resolve/main/{file}` with ranges, ETag and commit
//! headers. It answers at most 64 connections, then stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// Serves `files` (name, bytes) as repo `repo`; returns the endpoint URL and the log of
/// requested paths.
pub fn serve(repo: &str, files: Vec<(String, Vec<u8>)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = requests.clone();
    let (api, resolve) = (format!("/api/models/{repo}"), format!("/{repo}/resolve/main/"));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(v.trim().to_string());
                }
            }
            log.lock().unwrap().push(path.clone());
            let sha = "0123456789abcdef0123456789abcdef01234567";
            let (status, headers, body) = if path.starts_with(&api) {
                let siblings: Vec<_> = files.iter().map(|(n, _)| serde_json::json!({"rfilename": n})).collect();
                let j = serde_json::json!({"siblings": siblings, "sha": sha}).to_string();
                (
                    "200 OK",
                    "Content-Type: application/json\r\n".to_string(),
                    j.into_bytes(),
                )
            } else if let Some(name) = path.strip_prefix(&resolve) {
                match files.iter().find(|(n, _)| n == name) {
                    Some((_, data)) => {
                        let start: usize = range
                            .as_deref()
                            .and_then(|r| r.split('-').next())
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        let end = match range.as_deref() {
                            Some("0-0") => 1,
                            _ => data.len(),
                        };
                        // A stable ETag per name (FNV-1a).
                        let etag = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                        });
                        let h = format!(
                            "ETag: \"{etag:016x}\"\r\nX-Repo-Commit: {sha}\r\nContent-Range: bytes {start}-{}/{}\r\n",
                            end.max(1) - 1,
                            data.len()
                        );
                        ("206 Partial Content", h, data[start.min(end)..end].to_vec())
                    }
                    None => ("404 Not Found", String::new(), Vec::new()),
                }
            } else {
                ("404 Not Found", String::new(), Vec::new())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.flush();
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        }
    });
    (format!("http://{addr}"), requests)
}
