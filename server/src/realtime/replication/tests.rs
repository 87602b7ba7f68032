use super::*;

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
