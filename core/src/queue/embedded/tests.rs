//! Unit tests of the record format and the dedup purge; the queue contract
//! itself is tested against both backends in `tests/queue.rs`.

use redb::{ReadableTable, ReadableTableMetadata};

use super::enqueue::{enqueue, purge_expired_marks};
use super::job::{Job, Ordered, Stage};
use super::tables::{self, Commit};
use crate::queue::{NewEvent, Order, QueueError};

#[test]
fn job_records_round_trip() {
    let mut pending = Job::new(
        "bot-a",
        "crm",
        Stage::Pending {
            due_ms: 1_700_000_000_123,
        },
    );
    pending.token = 42;
    pending.attempts = 3;
    pending.base = 1;
    let dead = Job::new(
        "bót",
        "wébhook",
        Stage::Dead {
            dead_ms: 7,
            reason: "plugin failed: trap ✗".into(),
        },
    );
    let mut waiting = Job::new("bot-a", "crm", Stage::Waiting { since_ms: 5 });
    waiting.ordered = Some(Ordered {
        suppress: true,
        message: "wamid.ü".into(),
        rank: 3,
    });
    let suppressed = Job {
        stage: Stage::Suppressed {
            done_ms: 9,
            reason: "suppressed: later".into(),
        },
        ..waiting.clone()
    };
    for job in [pending.clone(), dead, waiting, suppressed] {
        assert_eq!(Job::decode("msg_x", &job.encode()).expect("decode"), job);
    }
    // A record of version 2 (before per-message order) reads as unordered.
    let mut v2 = pending.encode();
    v2.pop();
    v2[0] = 2;
    assert_eq!(Job::decode("msg_x", &v2).expect("decode v2"), pending);
}

#[test]
fn a_damaged_job_record_is_corrupt_not_a_panic() {
    let bytes = Job::new("bot-a", "crm", Stage::Pending { due_ms: 1 }).encode();
    for cut in 0..bytes.len() {
        let err = Job::decode("msg_x", &bytes[..cut]).expect_err("cut short");
        assert!(
            matches!(err.0, QueueError::Corrupt { ref id, .. } if id == "msg_x"),
            "{err:?}"
        );
    }
    let mut other_version = bytes.clone();
    other_version[0] = 99;
    assert!(Job::decode("msg_x", &other_version).is_err());
    let mut trailing = bytes;
    trailing.push(0);
    assert!(Job::decode("msg_x", &trailing).is_err());
}

#[test]
fn expired_dedup_marks_are_purged_a_bounded_number_at_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = super::open::open(dir.path(), &crate::queue::Clock::system()).expect("open");
    let events: Vec<NewEvent> = (0..5)
        .map(|i| NewEvent {
            bot: "bot-a".into(),
            event_id: format!("e{i}"),
            deliveries: vec![],
        })
        .collect();
    // Marked at t=1000 for 10 ms, plus one marked at t=5000 for an hour.
    tables::write(&db, |t| {
        enqueue(
            t,
            &events,
            1_000,
            10,
            crate::queue::History::OFF,
            crate::queue::Handoff::NONE,
        )
    })
    .expect("enqueue");
    let live = vec![NewEvent {
        bot: "bot-a".into(),
        event_id: "live".into(),
        deliveries: vec![],
    }];
    tables::write(&db, |t| {
        enqueue(
            t,
            &live,
            5_000,
            3_600_000,
            crate::queue::History::OFF,
            crate::queue::Handoff::NONE,
        )
    })
    .expect("enqueue");

    let marks = |db: &redb::Database| {
        tables::write(db, |t| {
            let n = (t.dedup.len()?, t.dedup_expiry.len()?);
            Ok((n, Commit::No))
        })
        .expect("count")
    };
    // The second enqueue already purged the five expired marks (it purges
    // at least 64 per call).
    assert_eq!(marks(&db), (1, 1));

    // A bounded purge takes only that many, oldest first.
    tables::write(&db, |t| {
        enqueue(
            t,
            &events,
            6_000,
            10,
            crate::queue::History::OFF,
            crate::queue::Handoff::NONE,
        )
    })
    .expect("enqueue");
    assert_eq!(marks(&db), (6, 6));
    let purged = tables::write(&db, |t| {
        Ok((purge_expired_marks(t, 7_000, 2)?, Commit::Yes))
    })
    .expect("purge");
    assert_eq!(purged, 2);
    assert_eq!(marks(&db), (4, 4));
    let purged = tables::write(&db, |t| {
        Ok((purge_expired_marks(t, 7_000, 100)?, Commit::Yes))
    })
    .expect("purge");
    assert_eq!(purged, 3);
    let live_left = tables::write(&db, |t| {
        let expiry = t.dedup.get(("bot-a", "live"))?.map(|v| v.value());
        Ok((expiry, Commit::No))
    })
    .expect("read");
    assert_eq!(live_left, Some(3_605_000), "a live mark is never purged");
}

#[test]
fn an_expired_mark_is_absent_even_before_it_is_purged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = super::open::open(dir.path(), &crate::queue::Clock::system()).expect("open");
    let event = vec![NewEvent {
        bot: "bot-a".into(),
        event_id: "e1".into(),
        deliveries: vec![],
    }];
    // Enqueues the event at `now` with a 10 ms window: (accepted, duplicates).
    let enqueue_at = |now| {
        let (outcome, _) = tables::write(&db, |t| {
            enqueue(
                t,
                &event,
                now,
                10,
                crate::queue::History::OFF,
                crate::queue::Handoff::NONE,
            )
        })
        .expect("enqueue");
        (outcome.accepted, outcome.duplicates)
    };
    assert_eq!(enqueue_at(1_000), (1, 0));
    assert_eq!(enqueue_at(1_009), (0, 1), "live until its expiry");
    assert_eq!(enqueue_at(1_010), (1, 0), "expired at its expiry");
}

#[test]
fn a_file_laid_out_before_lanes_is_migrated_on_open() {
    use super::tables::{COUNTERS, JOBS, OLD_DUE, PAYLOADS, SCHEMA, SCHEMA_WITHOUT_LANES};
    use crate::event::Status;
    use crate::queue::{Delivery, EmbeddedQueue, Queue};

    let dir = tempfile::tempdir().expect("temp dir");
    let delivery = Delivery {
        id: "msg_old".into(),
        bot: "bot-a".into(),
        webhook: "crm".into(),
        event_id: "e1".into(),
        status: Status::Read,
        message_id: None,
        recipient: None,
        created_ms: 1,
        order: Order::Any,
        content_type: "application/json".into(),
        headers: vec![],
        body: b"{}".to_vec(),
    };
    {
        // Layout 1, as the version before lanes wrote it: a version-1 job
        // record (no webhook) and the single due index.
        let db = redb::Database::create(dir.path().join(super::open::FILE_NAME)).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let mut record = vec![1u8, 0];
            record.extend_from_slice(&0u64.to_le_bytes()); // token
            record.extend_from_slice(&0u32.to_le_bytes()); // attempts
            record.extend_from_slice(&0u32.to_le_bytes()); // base
            record.extend_from_slice(&5u64.to_le_bytes()); // due ms
            record.extend_from_slice(&5u32.to_le_bytes());
            record.extend_from_slice(b"bot-a");
            let mut jobs = txn.open_table(JOBS).expect("jobs");
            jobs.insert("msg_old", record.as_slice()).expect("job");
            let mut payloads = txn.open_table(PAYLOADS).expect("payloads");
            let meta = serde_json::to_vec(&delivery).expect("meta");
            payloads
                .insert("msg_old", (meta.as_slice(), b"{}".as_slice()))
                .expect("payload");
            let mut due = txn.open_table(OLD_DUE).expect("due");
            due.insert((5u64, "msg_old"), ()).expect("due");
            let mut counters = txn.open_table(COUNTERS).expect("counters");
            counters
                .insert(SCHEMA, SCHEMA_WITHOUT_LANES)
                .expect("schema");
        }
        txn.commit().expect("commit");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let q = EmbeddedQueue::open(dir.path()).expect("open migrates");
        let claimed = q
            .claim(10, 10, std::time::Duration::from_secs(30))
            .await
            .expect("claim")
            .jobs;
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].delivery, delivery);
        assert!(q.ack(&claimed[0].lease, None).await.expect("ack"));
        assert_eq!(q.depth().await.expect("depth").pending, 0);
    });
}
