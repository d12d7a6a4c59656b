//! Pipelines that feed themselves: refused by `weir validate`, `weir run` and
//! a reload when their subjects make a loop, and stopped at run time by the
//! hop count when a loop is allowed (or cannot be seen in the files).

use std::time::Duration;

use weir_tests::harness::*;
use weir_tests::plugins;

fn pipeline(name: &str, source: &str, sink: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\n{extra}\n[source]\nsubject = \"{source}\"\n\n{}\n[sink]\nsubject = \"{sink}\"\n\n[dead_letter]\nsubject = \"dlq.{name}\"\n",
        stage("noop", plugins::NOOP, "{}")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_refuses_a_pipeline_that_feeds_itself_naming_file_line_and_key() {
    let dir = TempDir::new("loops");
    std::fs::write(dir.path().join("echo.toml"), pipeline("echo", "shop.events.>", "{subject}", "")).unwrap();
    std::fs::write(dir.path().join("fine.toml"), pipeline("fine", "shop.orders.>", "processed.{subject}", "")).unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "").unwrap();
    let run = cli_with_config(&config, dir.path(), &["validate", dir.path().to_str().unwrap()]).await;
    assert_eq!(run.code, Some(1), "{run}");
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("echo.toml:"))
        .unwrap_or_else(|| panic!("no error naming echo.toml; {run}"));
    assert!(line.contains("echo.toml:12:"), "the error gives the line of [sink] subject: {line}");
    assert!(line.contains("sink.subject"), "{line}");
    assert!(line.contains("feeds itself"), "{line}");
    assert!(run.stderr.contains("allow_loops"), "the help says how to allow it: {run}");
    assert!(run.stdout.contains("ok fine"), "the other pipeline is fine: {run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_refuses_pipelines_that_feed_each_other() {
    let dir = TempDir::new("loops");
    std::fs::write(dir.path().join("a.toml"), pipeline("a", "x.>", "y.{subject}", "")).unwrap();
    std::fs::write(dir.path().join("b.toml"), pipeline("b", "y.>", "x.{2}", "")).unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "").unwrap();
    let run = cli_with_config(&config, dir.path(), &["validate", dir.path().to_str().unwrap()]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("pipelines form a loop"), "{run}");
    assert!(run.stderr.contains("\"a\" [sink] publishes to y.x.> which \"b\" reads (y.>)"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_source_reads_is_a_loop() {
    let dir = TempDir::new("loops");
    let text = pipeline("p", "shop.>", "out.{subject}", "").replace("dlq.p", "shop.dlq");
    std::fs::write(dir.path().join("p.toml"), text).unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "").unwrap();
    let run = cli_with_config(&config, dir.path(), &["validate", dir.path().to_str().unwrap()]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("dead_letter.subject"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_to_start_a_loop_and_a_reload_into_one_keeps_the_old_version() {
    let server = NatsServer::new();
    let looping = pipeline("echo", "shop.events.>", "{subject}", "");
    let mut weir = Weir::builder(&server).pipeline("echo.toml", &looping).spawn();
    let status = weir.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "weir run refuses a pipeline that feeds itself");
    assert!(weir.stderr().contains("feeds itself"), "{}", weir.stderr());

    // A running pipeline changed into a loop: the reload fails, the old goes on.
    let client = server.client().await;
    let good = pipeline("echo", "shop.events.>", "processed.{subject}", "");
    let weir = Weir::builder(&server).instance("loops").pipeline("echo.toml", &good).start();
    let mut out = subscribe(&client, "processed.>").await;
    std::fs::write(weir.pipelines_dir().join("echo.toml"), &looping).unwrap();
    let cli = weir.cli(&["reload"]).await;
    assert_eq!(cli.code, Some(1), "{cli}");
    assert!(cli.stdout.contains("feeds itself"), "{cli}");
    publish_orders(&client, "shop.events.viewed", 0..10).await;
    let got = collect_exactly(&mut out, "outputs of the old version", 10, Duration::from_secs(10), Duration::from_millis(300)).await;
    assert_exactly_once("outputs", got.iter().map(id_of), 0..10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_loop_is_stopped_by_the_hop_count_with_a_dead_letter() {
    let server = NatsServer::new();
    let client = server.client().await;
    let mut outputs = subscribe(&client, "shop.events.>").await;
    let mut dead = subscribe(&client, "dlq.echo").await;
    let weir = Weir::builder(&server)
        .pipeline("echo.toml", &pipeline("echo", "shop.events.>", "{subject}", "allow_loops = true"))
        .start();
    assert!(weir.stderr().contains("loop"), "weir warns about the loop it was allowed to run: {}", weir.stderr());

    publish_orders(&client, "shop.events.viewed", 0..1).await;
    // The input itself, then one output per hop until the limit.
    let seen = collect_for(&mut outputs, Duration::from_secs(3)).await;
    let letters = collect(&mut dead, 1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_eq!(header(&letters[0], "weir-error-kind").as_deref(), Some("loop"), "{}", describe(&letters[0]));
    assert!(header(&letters[0], "weir-error").is_some_and(|e| e.contains("16")), "{}", describe(&letters[0]));
    assert_eq!(seen.len(), 17, "the input and 16 outputs, then it stops: {}", seen.iter().map(describe).collect::<Vec<_>>().join("\n"));
    let hops: Vec<Option<String>> = seen.iter().map(|m| header(m, "weir-hops")).collect();
    assert_eq!(hops[0], None, "the published input has no hop count");
    assert_eq!(hops[1], None, "a first output carries weir-pipeline only");
    assert_eq!(hops[2].as_deref(), Some("2"));
    assert_eq!(hops[16].as_deref(), Some("16"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(collect_for(&mut outputs, Duration::from_millis(500)).await.is_empty(), "nothing more after the dead letter");
}
