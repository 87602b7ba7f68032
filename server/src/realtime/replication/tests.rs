use super::*;
use proptest::prelude::*;

fn xlog(data: &[u8], wal_start: u64) -> XLogData {
    XLogData {
        wal_start: Lsn(wal_start),
        wal_end: Lsn(wal_start),
        send_time: 0,
        data: Bytes::copy_from_slice(data),
    }
}

fn commit(end: u64) -> Vec<u8> {
    let mut v = vec![b'C', 0];
    v.extend_from_slice(&(end - 8).to_be_bytes());
    v.extend_from_slice(&end.to_be_bytes());
    v.extend_from_slice(&0i64.to_be_bytes());
    v
}

#[test]
fn names_are_checked() {
    assert!(check_name("slot", "doska_realtime_1").is_ok());
    for bad in ["", "Doska", "a-b", "a b", "x'; drop", &"a".repeat(64)] {
        assert!(check_name("slot", bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn frames_split_and_reject_bad_lengths() {
    let mut buf = BytesMut::from(&b"Z\0\0\0\x05I"[..]);
    buf.extend_from_slice(b"C\0\0");
    let f = take_frame(&mut buf).unwrap().unwrap();
    assert_eq!((f.tag, &f.body[..]), (b'Z', &b"I"[..]));
    assert!(take_frame(&mut buf).unwrap().is_none());
    assert!(take_frame(&mut BytesMut::from(&b"Z\0\0\0\x03"[..])).is_err());
    assert!(take_frame(&mut BytesMut::from(&b"Z\x7f\xff\xff\xff"[..])).is_err());
}

#[test]
fn flush_is_only_what_was_acknowledged() {
    let mut p = Progress::default();
    p.delivered(&xlog(b"B", 100));
    p.keepalive(Lsn(500)); // mid-transaction: not an idle point
    assert_eq!(p.confirmable(Lsn(0)), Lsn(0));
    p.delivered(&xlog(&commit(200), 200));
    assert_eq!(p.last_commit_end, Lsn(200));
    assert_eq!(p.confirmable(Lsn(0)), Lsn(0));
    p.keepalive(Lsn(600)); // idle, but commit 200 not yet acknowledged
    assert_eq!(p.confirmable(Lsn(150)), Lsn(150));
    assert_eq!(p.confirmable(Lsn(200)), Lsn(600));
    assert_eq!(p.received, Lsn(600));
}

#[test]
fn status_update_layout() {
    let mut p = Progress::default();
    p.keepalive(Lsn(0x10));
    let msg = standby_status(&p, Lsn(0x8), true);
    assert_eq!(msg[0], b'd');
    assert_eq!(msg[5], b'r');
    assert_eq!(&msg[6..14], &0x10u64.to_be_bytes());
    assert_eq!(&msg[14..22], &0x10u64.to_be_bytes()); // idle point, nothing outstanding
    assert_eq!(msg[msg.len() - 1], 1);
}

#[test]
fn server_errors_keep_code_and_detail() {
    let body = b"SERROR\0C42710\0Mreplication slot \"s\" already exists\0Dmore\0\0";
    let e = server_error(body);
    assert_eq!(e.sqlstate(), Some("42710"));
    assert!(e.to_string().contains("already exists (more)"));
}

proptest! {
    #![proptest_config(crate::props::budget(512))]

    /// What the server sends, cut anywhere: frames are split out or refused, and each frame is
    /// handled (XLogData, keepalive, error, copy done) or refused — never a panic, and the
    /// progress it records never goes back.
    #[test]
    fn the_stream_framing_never_panics(
        frames in prop::collection::vec(
            (
                prop::sample::select(b"dcENSZWx".to_vec()),
                prop::sample::select(b"wkq".to_vec()),
                prop::collection::vec(any::<u8>(), 0..40),
                -2i32..60,
            ),
            0..6,
        ),
        chunk in 1usize..32,
    ) {
        let mut wire = Vec::new();
        for (tag, kind, body, skew) in &frames {
            let mut payload = vec![*kind];
            payload.extend_from_slice(body);
            wire.push(*tag);
            // Mostly the true length; sometimes a wrong one.
            let len = if *skew >= 0 && *skew < 50 { payload.len() as i32 + 4 } else { *skew };
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend_from_slice(&payload);
        }
        let mut buf = BytesMut::new();
        let mut progress = Progress::default();
        'read: for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match take_frame(&mut buf) {
                    Ok(Some(frame)) => {
                        let before = progress.received;
                        let _ = handle_frame(frame, &mut progress);
                        prop_assert!(progress.received >= before);
                    }
                    Ok(None) => break,
                    Err(_) => break 'read,
                }
            }
        }
    }

    #[test]
    fn server_errors_and_rows_never_panic(body in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = server_error(&body).to_string();
        let _ = data_row(&body);
    }
}
