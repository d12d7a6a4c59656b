//! What an operator watches: the Prometheus endpoint, health probes, JSON
//! logs and the NATS service face, against a real weir and nats-server.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use serde_json::Value;
use weir_tests::harness::*;
use weir_tests::plugins;

/// A plain HTTP GET: (status code, body).
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of the sample `name` (with its labels, exactly) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

fn pipeline() -> String {
    format!(
        r#"name = "ops"
[source]
subject = "in.>"
[[stages]]
name = "f"
plugin = {filter}
config = {{ all = [ {{ field = "price", gt = 10 }} ] }}
[[stages]]
name = "chaos"
plugin = {chaos}
[sink]
subject = "out.{{subject}}"
[dead_letter]
subject = "dlq.ops"
"#,
        filter = toml_str(plugins::FILTER),
        chaos = toml_str(plugins::CHAOS),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_what_was_published_and_received() {
    let server = NatsServer::new();
    let address = format!("127.0.0.1:{}", free_port());
    let _weir = Weir::builder(&server).metrics(&address).pipeline("ops.toml", &pipeline()).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    let mut dlq = subscribe(&client, "dlq.>").await;

    // 60 pass, 30 are filtered out (price 5), 10 panic in the chaos stage.
    for i in 0..100u64 {
        let body = match i % 10 {
            0 => serde_json::json!({"id": i, "price": 50, "chaos": "panic"}),
            1..=3 => serde_json::json!({"id": i, "price": 5}),
            _ => serde_json::json!({"id": i, "price": 50}),
        };
        publish(&client, "in.x", test_headers(i), serde_json::to_vec(&body).unwrap()).await;
    }
    flush(&client).await;
    assert_eq!(collect(&mut out, 60, Duration::from_secs(20)).await.len(), 60);
    assert_eq!(collect(&mut dlq, 10, Duration::from_secs(20)).await.len(), 10);

    let text = eventually("the counters to reach 100 inputs", Duration::from_secs(5), || {
        let address = address.clone();
        async move {
            let (status, text) = get(&address, "/metrics");
            match sample(&text, "weir_events_in_total{pipeline=\"ops\"}") {
                Some(n) if status == 200 && n == 100.0 => Ok(text),
                other => Err(format!("status {status}, events_in {other:?}")),
            }
        }
    })
    .await;
    assert_eq!(sample(&text, "weir_events_out_total{pipeline=\"ops\"}"), Some(60.0), "{text}");
    assert_eq!(sample(&text, "weir_events_dropped_total{pipeline=\"ops\"}"), Some(30.0), "{text}");
    assert_eq!(sample(&text, "weir_events_dead_lettered_total{pipeline=\"ops\",stage=\"chaos\",kind=\"trap\"}"), Some(10.0), "{text}");
    assert_eq!(sample(&text, "weir_stage_events_total{pipeline=\"ops\",stage=\"f\"}"), Some(100.0), "{text}");
    assert_eq!(sample(&text, "weir_stage_events_total{pipeline=\"ops\",stage=\"chaos\"}").map(|n| n >= 70.0), Some(true), "{text}");
    assert!(
        sample(&text, "weir_stage_instance_restarts_total{pipeline=\"ops\",stage=\"chaos\"}").is_some_and(|n| n >= 10.0),
        "{text}"
    );
    assert!(text.contains("weir_stage_call_duration_seconds_bucket{"), "{text}");
    assert_eq!(sample(&text, "weir_nats_connected"), Some(1.0), "{text}");
    assert_eq!(get(&address, "/healthz").0, 200);
    assert_eq!(get(&address, "/nope").0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_nats_connection() {
    let mut server = NatsServer::new();
    let address = format!("127.0.0.1:{}", free_port());
    let _weir = Weir::builder(&server).metrics(&address).pipeline("ops.toml", &pipeline()).start();
    let ready = |want: u16| {
        let address = address.clone();
        move || {
            let address = address.clone();
            async move {
                let (status, body) = get(&address, "/readyz");
                if status == want { Ok(body) } else { Err(format!("{status}: {body}")) }
            }
        }
    };
    eventually("/readyz to say ready", Duration::from_secs(5), ready(200)).await;
    server.stop();
    let body = eventually("/readyz to say not ready once NATS is gone", Duration::from_secs(10), ready(503)).await;
    assert!(body.contains("not connected to NATS"), "{body}");
    assert_eq!(get(&address, "/healthz").0, 200, "the process is still alive");
    server.start();
    eventually("/readyz to say ready again after NATS is back", Duration::from_secs(20), ready(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_their_fields_and_stage_logs_name_the_stage() {
    let server = NatsServer::new();
    let weir = Weir::builder(&server).arg("--log-format").arg("json").pipeline("ops.toml", &pipeline()).start();
    let client = server.client().await;
    let body = serde_json::json!({"price": 50, "chaos": "log", "message": "hello from the stage"});
    publish(&client, "in.x", test_headers(1), serde_json::to_vec(&body).unwrap()).await;
    flush(&client).await;
    assert!(weir.wait_for_stderr(Duration::from_secs(10), |t| t.contains("hello from the stage")), "{}", weir.stderr());

    let lines: Vec<Value> = weir
        .stderr()
        .lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let ready = lines
        .iter()
        .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("ready:")))
        .expect("a ready line");
    assert_eq!(ready["level"], "INFO");
    assert!(ready["fields"]["url"].as_str().is_some_and(|u| u.starts_with("nats://")));
    let stage = lines.iter().find(|l| l["fields"]["message"] == "hello from the stage").expect("the stage's line");
    assert_eq!(stage["fields"]["pipeline"], "ops");
    assert_eq!(stage["fields"]["stage"], "chaos");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_face_answers_ping_info_stats_and_status() {
    let server = NatsServer::new();
    let _weir = Weir::builder(&server).instance("edge-1").pipeline("ops.toml", &pipeline()).start();
    let client = server.client().await;
    let mut out = subscribe(&client, "out.>").await;
    for i in 0..5u64 {
        publish(&client, "in.x", test_headers(i), serde_json::to_vec(&serde_json::json!({"price": 50})).unwrap()).await;
    }
    flush(&client).await;
    assert_eq!(collect(&mut out, 5, Duration::from_secs(10)).await.len(), 5);

    let ask = |subject: &'static str| {
        let client = client.clone();
        async move {
            let reply = tokio::time::timeout(Duration::from_secs(5), client.request(subject, "".into()))
                .await
                .unwrap_or_else(|_| panic!("{subject}: no answer"))
                .unwrap_or_else(|e| panic!("{subject}: {e}"));
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    assert_eq!(ask("$SRV.PING.weir").await["name"], "weir");
    let info = ask("$SRV.INFO.weir").await;
    assert_eq!(info["metadata"]["instance"], "edge-1");
    let stats = eventually("$SRV.STATS to count the 5 events", Duration::from_secs(5), || async {
        let stats = ask("$SRV.STATS.weir").await;
        let p = &stats["endpoints"][0]["data"]["pipelines"][0];
        if p["events_out"] == 5 { Ok(stats) } else { Err(stats.to_string()) }
    })
    .await;
    assert_eq!(stats["endpoints"][0]["data"]["pipelines"][0]["name"], "ops");
    let status = ask("weir.control.edge-1.status").await;
    assert_eq!(status["instance"], "edge-1");
    assert_eq!(status["pipelines"][0]["events_in"], 5);
}

/// Sends `request` as written and reads the whole response, in at most 5 s:
/// (status line, headers, body).
fn exchange(address: &str, request: &str) -> (String, String, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("{request:?}: no full answer within 5 s: {e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{request:?}: not an HTTP response: {response:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// Whether weir closed `stream` (end of stream or reset, after whatever it
/// wrote) before `deadline`.
fn closed_by_weir(stream: &mut std::net::TcpStream, deadline: std::time::Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_keep_probes_out() {
    let server = NatsServer::new();
    let address = format!("127.0.0.1:{}", free_port());
    let mut weir = Weir::builder(&server).metrics(&address).pipeline("ops.toml", &pipeline()).start();
    eventually("/readyz to say ready", Duration::from_secs(10), || {
        let address = address.clone();
        async move {
            let (status, body) = get(&address, "/readyz");
            if status == 200 { Ok(()) } else { Err(format!("{status}: {body}")) }
        }
    })
    .await;

    // 500 connections that send nothing, many more than the endpoint serves
    // at once, held open while others ask.
    let mut silent: Vec<std::net::TcpStream> = (0..500)
        .map(|i| {
            std::net::TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(5)).unwrap_or_else(|e| panic!("silent connection {i}: {e}"))
        })
        .collect();
    let opened = std::time::Instant::now();

    // Each request is answered in full within exchange's 5 s.
    let (status, _, body) = exchange(&address, "GET /readyz HTTP/1.1\r\nHost: weir\r\n\r\n");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ready\n"));
    let (status, _, body) = exchange(&address, "GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(sample(&body, "weir_pipelines_running"), Some(1.0), "{body}");
    // HEAD: GET's status and length, no body.
    let (status, headers, body) = exchange(&address, "HEAD /readyz HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("Content-Length: 6"), "{headers}");
    assert_eq!(body, "");
    let (status, headers, body) = exchange(&address, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("Content-Length: "), "{headers}");
    assert_eq!(body, "");
    let (status, headers, _) = exchange(&address, "POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("Allow: GET, HEAD"), "{headers}");
    let (status, _, body) = exchange(&address, &format!("GET /metrics HTTP/1.1\r\nCookie: {}\r\n\r\n", "x".repeat(20_000)));
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large", "{body}");
    // All of it came before a silent connection could have timed out (5 s):
    // they were not waited for.
    assert!(opened.elapsed() < Duration::from_secs(5), "answers took {:?}", opened.elapsed());

    // Every silent connection is closed by weir: the oldest to make room,
    // the rest when their 5 s to send a request run out.
    let deadline = opened + Duration::from_secs(20);
    let open = silent.iter_mut().map(|s| closed_by_weir(s, deadline)).filter(|closed| !closed).count();
    assert_eq!(open, 0, "silent connections still open after 20 s");
    assert!(weir.is_running(), "{}", weir.stderr());
    assert_eq!(get(&address, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(&address, "/readyz"), (200, "ready\n".to_owned()));
}
