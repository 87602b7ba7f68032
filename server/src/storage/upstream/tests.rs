use super::*;

#[test]
fn keys_mirror_the_disk_layout() {
    let id = uuid::Uuid::parse_str("ab0f6f7e-51a8-4c1f-9d3c-7d1e6a2b9c01").unwrap();
    let version = uuid::Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap();
    assert_eq!(
        object_key(&BlobKey::Object { id, version }),
        format!("data/ab/{id}.{version}")
    );
    assert_eq!(
        object_key(&BlobKey::Part { id }),
        format!("data/ab/{id}.part")
    );
}

#[test]
fn service_errors_and_upload_listings_parse() {
    let (code, message) = error_of(
        b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
    );
    assert_eq!(code, "NoSuchBucket");
    assert_eq!(message, "The specified bucket does not exist");
    assert_eq!(error_of(b"not xml"), (String::new(), String::new()));
    let page = UploadsPage::parse(
        br#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>data/ab/x.part</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>data/ab/a&amp;b.1</Key><UploadId>u1</UploadId>
<Initiator><ID>i</ID></Initiator><Initiated>2026-01-01T00:00:00.000Z</Initiated></Upload>
  <Upload><Key>data/ab/x.part</Key><UploadId>u2</UploadId><Initiated>2026-01-02T00:00:00Z</Initiated></Upload>
</ListMultipartUploadsResult>"#,
    )
    .unwrap();
    assert_eq!(
        page.uploads,
        vec![
            (
                "data/ab/a&b.1".to_string(),
                "u1".to_string(),
                "2026-01-01T00:00:00.000Z".to_string()
            ),
            (
                "data/ab/x.part".to_string(),
                "u2".to_string(),
                "2026-01-02T00:00:00Z".to_string()
            ),
        ]
    );
    assert_eq!(
        page.next,
        Some(("data/ab/x.part".to_string(), "u2".to_string()))
    );
    assert!(UploadsPage::parse(b"<a><b></a>").is_err());
    assert!(older("2000-01-01T00:00:00Z", Duration::from_secs(60)));
    assert!(!older(
        &chrono::Utc::now().to_rfc3339(),
        Duration::from_secs(60)
    ));
}
