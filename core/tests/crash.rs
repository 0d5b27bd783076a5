//! Dispatchers as real processes, killed and stopped under load, against a
//! real redis-server and a real receiver: nothing accepted is lost.

mod support;

use std::time::Duration;

use support::dispatcher::{Dispatcher, batch, check_deliveries, post, wait_until};
use support::receiver::{Receiver, Reply};
use support::redis::{RedisServer, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_accepted() {
    const EVENTS: usize = 10_000;
    const BATCH: usize = 100;
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut first = Dispatcher::start(dir.path(), &redis, &receiver, "first").await;
    let client = support::http_client();

    let mut pending: Vec<usize> = (0..EVENTS).step_by(BATCH).collect();
    let mut accepted = 0;
    let mut killed = false;
    let mut second: Option<Dispatcher> = None;
    while let Some(start) = pending.first().copied() {
        let ports: Vec<u16> = std::iter::once(first.port)
            .chain(second.as_ref().map(|d| d.port))
            .collect();
        if post(&client, &ports, &batch(start, BATCH)).await {
            accepted += BATCH;
            pending.remove(0);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Kill the dispatcher mid-load, while deliveries are in flight.
        if !killed && accepted >= EVENTS * 3 / 10 {
            first.kill9();
            killed = true;
            second = Some(Dispatcher::start(dir.path(), &redis, &receiver, "second").await);
        }
    }
    assert!(killed);
    let got = wait_until(&receiver, EVENTS, Duration::from_secs(120)).await;
    let duplicates = check_deliveries(&got, EVENTS);
    eprintln!(
        "kill -9 under load: {EVENTS} delivered, {duplicates} re-deliveries (sends in flight at the kill)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dispatcher_takes_over_the_leases_of_a_killed_one() {
    let redis = RedisServer::start();
    // Slow answers, so the first dispatcher is killed with sends in flight.
    let receiver = Receiver::with(|_, _| Reply::delayed(200, Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut a = Dispatcher::start(dir.path(), &redis, &receiver, "a").await;
    let b = Dispatcher::start(dir.path(), &redis, &receiver, "b").await;
    let client = support::http_client();
    assert!(post(&client, &[a.port], &batch(0, 200)).await);
    receiver.wait_for(20, Duration::from_secs(30)).await;
    a.kill9();
    let got = wait_until(&receiver, 200, Duration::from_secs(60)).await;
    check_deliveries(&got, 200);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_sends_and_loses_nothing() {
    let redis = RedisServer::start();
    let receiver = Receiver::with(|_, _| Reply::delayed(200, Duration::from_millis(200))).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut dispatcher = Dispatcher::start(dir.path(), &redis, &receiver, "term").await;
    let client = support::http_client();
    assert!(post(&client, &[dispatcher.port], &batch(0, 300)).await);
    receiver.wait_for(10, Duration::from_secs(30)).await;
    let status = dispatcher.sigterm();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let before_restart = receiver.received();
    // Nothing was half-done: every send that started was completed and acked.
    let restarted = Dispatcher::start(dir.path(), &redis, &receiver, "term2").await;
    let got = wait_until(&receiver, 300, Duration::from_secs(60)).await;
    let duplicates = check_deliveries(&got, 300);
    assert_eq!(
        duplicates,
        0,
        "a graceful stop re-sends nothing ({} arrived before the restart)",
        before_restart.len()
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_queue_kill_9_with_500_pending_to_a_down_receiver_delivers_all_after_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let queue = format!(
        "backend = \"embedded\"\npath = \"{}\"",
        dir.path().join("queue").display()
    );
    // The receiver is down: nothing listens on its port yet.
    let receiver_port = free_port();
    let receiver_url = format!("http://127.0.0.1:{receiver_port}");
    let mut dispatcher =
        Dispatcher::start_with(dir.path(), &queue, &receiver_url, "embedded").await;
    let client = support::http_client();
    for start in (0..500).step_by(100) {
        assert!(post(&client, &[dispatcher.port], &batch(start, 100)).await);
    }
    // Let some attempts fail against the closed port, then crash.
    tokio::time::sleep(Duration::from_millis(500)).await;
    dispatcher.kill9();

    let receiver =
        Receiver::start_on(format!("127.0.0.1:{receiver_port}").parse().expect("addr")).await;
    let restarted =
        Dispatcher::start_with(dir.path(), &queue, &receiver_url, "embedded-again").await;
    let got = wait_until(&receiver, 500, Duration::from_secs(60)).await;
    check_deliveries(&got, 500);
    drop(restarted);
}
