//! Self-tests of the end-to-end harness: the NATS server it starts, stops and
//! restarts, and the client helpers. No weir process involved.

use std::time::{Duration, Instant};

use weir_tests::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_on_the_same_port_keeps_jetstream_data() {
    let mut server = NatsServer::new();
    let port = server.port();
    assert_ne!(port, 4222, "the harness must never use the system NATS port");
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
    {
        let (_client, js) = server.jetstream().await;
        create_stream(&js, "IN", &["in.>"]).await;
        js_publish_orders(&js, "in.orders", 0..50).await;
        assert_eq!(stream_len(&js, "IN").await.unwrap(), 50);
    }

    server.stop();
    assert!(!server.is_running());
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "nothing listens on {port} after stop()");

    server.start();
    assert_eq!(server.port(), port, "start() after stop() reuses the port");
    let (_client, js) = server.jetstream().await;
    let messages = read_stream(&js, "IN").await;
    let ids: Vec<u64> = messages.iter().map(id_of).collect();
    assert_eq!(ids, (0..50).collect::<Vec<_>>(), "the stream's messages survive a restart, in order");
    assert_eq!(header(&messages[7], TEST_ID_HEADER).as_deref(), Some("7"));
    assert_eq!(header(&messages[7], "Nats-Msg-Id").as_deref(), Some("in-7"));

    // The duplicate window survives too: republishing the same ids adds nothing.
    js_publish_orders(&js, "in.orders", 0..50).await;
    assert_eq!(stream_len(&js, "IN").await.unwrap(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_collect_core_messages() {
    let server = NatsServer::new();
    let client = server.client().await;
    let mut sub = subscribe(&client, "in.>").await;

    let events = publish_orders(&client, "in.orders.new", 0..1000).await;
    let serialized = serde_json::to_vec(&events[0]).unwrap();
    assert!((250..400).contains(&serialized.len()), "events are about 300 bytes, got {}", serialized.len());

    let got = collect_exactly(&mut sub, "published orders", 1000, Duration::from_secs(10), Duration::from_millis(200)).await;
    for (i, message) in got.iter().enumerate() {
        assert_eq!(message.subject.as_str(), "in.orders.new");
        assert_eq!(id_of(message), i as u64);
        assert_eq!(header(message, TEST_ID_HEADER), Some(i.to_string()));
        assert_eq!(json(message), order(i as u64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_never_hangs() {
    let server = NatsServer::new();
    let client = server.client().await;
    let mut sub = subscribe(&client, "nothing.here").await;
    publish(&client, "nothing.here", test_headers(1), "x").await;

    let started = Instant::now();
    let got = collect(&mut sub, 5, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1, "returns what arrived");
    assert!(started.elapsed() < Duration::from_secs(2), "returns at the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_authentication_refuses_wrong_credentials() {
    let server = NatsServer::builder().user_password("weir", "s3cret").start();
    let client = server.client().await;
    publish(&client, "ok", test_headers(1), "x").await;

    let wrong = Auth::UserPassword { user: "weir".into(), password: "wrong".into() };
    let refused = wrong.connect_options().connect(server.url()).await;
    let error = refused.expect_err("a wrong password is refused").to_string();
    assert!(error.to_lowercase().contains("auth"), "refusal mentions authorization: {error}");

    let token_server = NatsServer::builder().token("t0ken").start();
    token_server.client().await;
    assert!(Auth::Token("nope".into()).connect_options().connect(token_server.url()).await.is_err());
}

#[test]
fn weir_toml_names_the_server_and_its_authentication() {
    let toml = WeirBuilder::new()
        .url("nats://127.0.0.1:1234")
        .auth(Auth::UserPassword { user: "u".into(), password: "p\"q".into() })
        .instance("weir-a")
        .workers(2)
        .shutdown_timeout("5s")
        .weir_toml();
    let expected = "instance = \"weir-a\"\npipelines = \"pipelines\"\nworkers = 2\nshutdown_timeout = \"5s\"\n\
                    cache_dir = \"cache\"\n\n[nats]\nurl = \"nats://127.0.0.1:1234\"\nuser = \"u\"\n\
                    password = \"p\\\"q\"\n\n[metrics]\nenabled = false\n";
    assert_eq!(toml, expected);
}
