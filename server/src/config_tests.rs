use super::*;

#[test]
fn flag_env_beats_file_beats_default() {
    let cli = Settings {
        listen: Some("127.0.0.1:1".parse().unwrap()),
        ..Default::default()
    };
    let file: Settings = toml::from_str("listen = \"127.0.0.1:2\"\njwt_exp = 60\n").unwrap();
    let c = Config::resolve(cli.over(file)).unwrap();
    assert_eq!(c.listen.port(), 1);
    assert_eq!(c.jwt_exp, 60);
    assert_eq!(c.db_pool, default_db_pool());
}

#[test]
fn auth_links_lead_back_to_the_frontend_doska_serves() {
    let site = |s: Settings| Config::resolve(s).unwrap().site_url;
    let listen = Some("127.0.0.1:8123".parse().unwrap());
    // Serving the app (the default): links come back to doska.
    let serving = Settings {
        listen,
        ..Default::default()
    };
    assert_eq!(site(serving), "http://127.0.0.1:8123");
    let behind_proxy = Settings {
        listen,
        external_url: Some("https://school.example.org/".into()),
        ..Default::default()
    };
    assert_eq!(site(behind_proxy), "https://school.example.org");
    // No frontend here: Supabase's default, a dev server.
    let api_only = Settings {
        listen,
        static_dir: Some(PathBuf::new()),
        ..Default::default()
    };
    assert_eq!(site(api_only), "http://localhost:3000");
    let given = Settings {
        listen,
        site_url: Some("https://app.example.org".into()),
        ..Default::default()
    };
    assert_eq!(site(given), "https://app.example.org");
}

#[test]
fn file_errors_name_the_line() {
    let dir = std::env::temp_dir().join(format!("doska-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(&p, "listen = \"127.0.0.1:2\"\nnot_a_key = 1\n").unwrap();
    let e = Settings::from_file(&p).unwrap_err().to_string();
    assert!(e.contains("not_a_key") && e.contains("line 2"), "{e}");
}

#[test]
fn sizes_and_body_limits() {
    assert_eq!(parse_size("10M"), Some(10 * MIB));
    assert_eq!(parse_size("512k"), Some(512 * 1024));
    assert_eq!(parse_size("1GiB"), Some(1024 * MIB));
    assert_eq!(parse_size("12"), Some(12));
    assert_eq!(parse_size("x"), None);
    let l = parse_body_limits("/rest/v1=1K,/storage/v1/object=2K").unwrap();
    assert_eq!(l.for_path("/rest/v1/todos"), 1024);
    assert_eq!(l.for_path("/storage/v1/object/x"), 2048);
    assert_eq!(l.for_path("/storage/v1/bucket"), 50 * 1024 * MIB);
    assert_eq!(l.for_path("/other"), MIB);
    assert!(parse_body_limits("rest=1").is_err());
}

#[test]
fn masks_secrets() {
    assert_eq!(
        mask_url("postgres://u:secret@h/db"),
        "postgres://u:********@h/db"
    );
    assert_eq!(
        mask_url("host=h password=x user=u"),
        "host=h password=******** user=u"
    );
    let c = Config::resolve(Settings {
        jwt_secret: Some("s".repeat(40)),
        database_url: Some("postgres://u:pw@h/db".into()),
        ..Default::default()
    })
    .unwrap();
    let t = c.masked_toml();
    assert!(!t.contains("ssss") && !t.contains(":pw@"), "{t}");
    let c = Config::resolve(Settings {
        s3_access_key_id: Some("AKID".into()),
        s3_secret_access_key: Some("s3-very-secret".into()),
        ..Default::default()
    })
    .unwrap();
    let t = c.masked_toml();
    assert!(t.contains("AKID") && !t.contains("s3-very-secret"), "{t}");
    assert!(!format!("{c:?}").contains("s3-very-secret"));
}

#[test]
fn storage_settings() {
    let c = Config::resolve(Settings {
        data_dir: Some("/d".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.storage_dir, PathBuf::from("/d/storage"));
    assert_eq!(c.storage_orphan_age_secs, 3600);
    assert_eq!(c.s3_listen.port(), 9000);
    assert!(c.s3_keys.is_none());
    assert_eq!(parse_duration_secs("15m"), Some(900));
    assert_eq!(parse_duration_secs("2"), Some(2));
    assert_eq!(parse_duration_secs("x"), None);
    assert!(
        Config::resolve(Settings {
            s3_access_key_id: Some("a".into()),
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Config::resolve(Settings {
            storage_orphan_age: Some("soon".into()),
            ..Default::default()
        })
        .is_err()
    );
}

#[test]
fn extra_search_path_defaults_to_public_and_extensions() {
    let c = Config::resolve(Settings::default()).unwrap();
    assert_eq!(c.db_extra_search_path, vec!["public", "extensions"]);
    let c = Config::resolve(Settings {
        db_extra_search_path: Some(" app , extensions ,".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.db_extra_search_path, vec!["app", "extensions"]);
    let file: Settings = toml::from_str("db_extra_search_path = \"x\"").unwrap();
    assert_eq!(file.db_extra_search_path.as_deref(), Some("x"));
}

#[test]
fn storage_backend_settings() {
    assert!(matches!(
        Config::resolve(Settings::default())
            .unwrap()
            .storage_backend,
        StorageBackend::Disk
    ));
    let s3 = |f: fn(&mut Settings)| {
        let mut s = Settings {
            storage_backend: Some(StorageBackendKind::S3),
            storage_s3_bucket: Some("blobs".into()),
            storage_s3_access_key_id: Some("AK".into()),
            storage_s3_secret_access_key: Some("SK".into()),
            ..Default::default()
        };
        f(&mut s);
        Config::resolve(s)
    };
    // AWS by default: its regional endpoint, virtual-hosted style.
    let c = s3(|_| {}).unwrap();
    let StorageBackend::S3(b) = &c.storage_backend else {
        panic!("s3 expected")
    };
    assert_eq!(b.endpoint, "https://s3.us-east-1.amazonaws.com");
    assert!(!b.path_style);
    assert!(
        !format!("{b:?}").contains("SK"),
        "the secret is never printed"
    );
    let toml = c.masked_toml();
    assert!(toml.contains("storage_backend = \"s3\""), "{toml}");
    assert!(!toml.contains("\"SK\""), "{toml}");
    // A custom endpoint (MinIO, Ceph) is path style unless told otherwise.
    let c = s3(|s| s.storage_s3_endpoint = Some("http://127.0.0.1:9000/".into())).unwrap();
    let StorageBackend::S3(b) = &c.storage_backend else {
        panic!("s3 expected")
    };
    assert_eq!(b.endpoint, "http://127.0.0.1:9000");
    assert!(b.path_style);
    // Bad input: each names its key.
    for (bad, key) in [
        (s3(|s| s.storage_s3_bucket = None), "storage_s3_bucket"),
        (
            s3(|s| s.storage_s3_secret_access_key = None),
            "storage_s3_secret_access_key",
        ),
        (
            s3(|s| s.storage_s3_access_key_id = Some(" ".into())),
            "storage_s3_access_key_id",
        ),
        (
            s3(|s| s.storage_s3_endpoint = Some("ftp://x".into())),
            "storage_s3_endpoint",
        ),
        (s3(|s| s.storage_backend = None), "storage_backend"),
    ] {
        let e = bad.unwrap_err().to_string();
        assert!(e.contains(key), "{e}");
    }
    // TOML keys like every flag.
    let s: Settings = toml::from_str(
        "storage_backend = \"s3\"\nstorage_s3_bucket = \"b\"\nstorage_s3_path_style = false\n",
    )
    .unwrap();
    assert_eq!(s.storage_backend, Some(StorageBackendKind::S3));
    assert_eq!(s.storage_s3_path_style, Some(false));
}

#[test]
fn realtime_defaults_and_bounds() {
    let c = Config::resolve(Settings::default()).unwrap();
    assert_eq!(c.realtime_replay_window_secs, 300);
    assert_eq!(c.realtime_replay_max_rows, 100_000);
    assert_eq!(c.realtime_max_message_bytes, 256 * 1024);
    let c = Config::resolve(Settings {
        realtime_replay_window: Some("90s".into()),
        realtime_max_message_bytes: Some(4096),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.realtime_replay_window_secs, 90);
    assert_eq!(c.realtime_max_message_bytes, 4096);
    for bad in [
        Settings {
            realtime_replay_window: Some("a while".into()),
            ..Default::default()
        },
        Settings {
            realtime_max_message_bytes: Some(10),
            ..Default::default()
        },
    ] {
        assert!(Config::resolve(bad).is_err());
    }
}

#[test]
fn rejects_half_tls_and_short_secret() {
    assert!(
        Config::resolve(Settings {
            tls_cert: Some("c".into()),
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Config::resolve(Settings {
            jwt_secret: Some("short".into()),
            ..Default::default()
        })
        .is_err()
    );
}
