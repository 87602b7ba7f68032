//! The render parameters: a table of good queries, a table of bad ones (each refused with its
//! reason), the signed-token form, and properties: any query string parses or is refused (never
//! panics), accepted sizes stay in bounds, and a transform survives its token form.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn q(s: &str) -> Result<Transform, ParamError> {
    let pairs = crate::http::query::pairs(s);
    Transform::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

#[test]
fn good_queries() {
    let t = |width, height, resize, quality, format| Transform {
        width,
        height,
        resize,
        quality,
        format,
    };
    use Format::*;
    use Resize::*;
    for (query, want) in [
        ("", t(None, None, Cover, None, Auto)),
        ("width=100", t(Some(100), None, Cover, None, Auto)),
        (
            "width=100&height=50&resize=contain",
            t(Some(100), Some(50), Contain, None, Auto),
        ),
        (
            "height=%2B7&resize=fill",
            t(None, Some(7), Fill, None, Auto),
        ),
        // Clamped as Supabase clamps: 1..=2000; 0 is not given.
        ("width=5000", t(Some(2000), None, Cover, None, Auto)),
        ("width=0&height=0", t(None, None, Cover, None, Auto)),
        (
            "width=99999999999999999999999",
            t(Some(2000), None, Cover, None, Auto),
        ),
        ("quality=20", t(None, None, Cover, Some(20), Auto)),
        (
            "quality=100&format=origin",
            t(None, None, Cover, Some(100), Origin),
        ),
        ("format=webp", t(None, None, Cover, None, Webp)),
        // The last of a repeated name wins; unknown names are not this stage's.
        ("width=1&width=3", t(Some(3), None, Cover, None, Auto)),
        (
            "token=abc&download=x.png&cacheNonce=1&width=9",
            t(Some(9), None, Cover, None, Auto),
        ),
    ] {
        assert_eq!(q(query), Ok(want), "{query:?}");
    }
}

#[test]
fn bad_queries_are_refused_with_their_reason() {
    use ParamError::*;
    for (query, want) in [
        ("width=abc", NotAnInteger("width")),
        ("width=-1", NotAnInteger("width")),
        ("height=1.5", NotAnInteger("height")),
        ("height=", NotAnInteger("height")),
        ("width=1e3", NotAnInteger("width")),
        ("width= 10", NotAnInteger("width")),
        ("width=%F0%9F%98%80", NotAnInteger("width")),
        ("quality=19", Quality),
        ("quality=101", Quality),
        ("quality=high", Quality),
        ("quality=", Quality),
        ("resize=stretch", Resize),
        ("resize=COVER", Resize),
        ("resize=", Resize),
        ("format=png", Format),
        ("format=", Format),
        ("format=avif", Avif),
        ("gravity=ce", Unsupported("gravity")),
        ("x_offset=0.5", Unsupported("x_offset")),
        ("y_offset=0.5", Unsupported("y_offset")),
    ] {
        assert_eq!(q(query), Err(want), "{query:?}");
    }
}

#[test]
fn json_transforms_as_storage_js_posts_them() {
    let t = Transform::from_json(&json!({"width": 100, "height": "40", "resize": "contain",
        "quality": 70, "format": "origin"}))
    .unwrap();
    assert_eq!(
        t,
        Transform {
            width: Some(100),
            height: Some(40),
            resize: Resize::Contain,
            quality: Some(70),
            format: Format::Origin,
        }
    );
    assert_eq!(
        Transform::from_json(&json!(null)).unwrap(),
        Transform::default()
    );
    for bad in [
        json!({"width": 10.5}),
        json!({"width": -3}),
        json!({"width": true}),
        json!({"width": [1]}),
        json!({"quality": 5}),
        json!({"resize": 1}),
        json!({"format": "avif"}),
        json!("width:100"),
        json!([1, 2]),
    ] {
        assert!(Transform::from_json(&bad).is_err(), "{bad}");
    }
}

#[test]
fn token_form_round_trips_and_refuses_garbage() {
    let t = q("width=300&height=200&resize=fill&quality=55&format=webp").unwrap();
    assert_eq!(
        t.to_token(),
        "width:300,height:200,resize:fill,quality:55,format:webp"
    );
    assert_eq!(Transform::from_token(&t.to_token()), Ok(t));
    assert_eq!(Transform::from_token(""), Ok(Transform::default()));
    assert_eq!(Transform::from_token("width"), Err(ParamError::Token));
    assert_eq!(
        Transform::from_token("width:x"),
        Err(ParamError::NotAnInteger("width"))
    );
}

fn arb_transform() -> impl Strategy<Value = Transform> {
    (
        proptest::option::of(MIN_SIZE..=MAX_SIZE),
        proptest::option::of(MIN_SIZE..=MAX_SIZE),
        prop_oneof![
            Just(Resize::Cover),
            Just(Resize::Contain),
            Just(Resize::Fill)
        ],
        proptest::option::of(20u8..=100),
        prop_oneof![Just(Format::Auto), Just(Format::Origin), Just(Format::Webp)],
    )
        .prop_map(|(width, height, resize, quality, format)| Transform {
            width,
            height,
            resize,
            quality,
            format,
        })
}

/// Query soup: known names with near-miss values, unknown names, encoded garbage.
fn arb_query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("width".to_string()),
        Just("height".to_string()),
        Just("resize".to_string()),
        Just("quality".to_string()),
        Just("format".to_string()),
        Just("gravity".to_string()),
        "[a-z_]{0,8}",
    ];
    let value = prop_oneof![
        "[0-9]{0,25}",
        "[-+]?[0-9]{1,4}(\\.[0-9])?",
        "(cover|contain|fill|origin|webp|avif|COVER)",
        "\\PC{0,6}",
        "%[0-9A-Fa-f]{2}",
    ];
    proptest::collection::vec((name, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(crate::props::budget(512))]

    #[test]
    fn any_query_parses_in_bounds_or_is_refused(query in arb_query()) {
        match q(&query) {
            Ok(t) => {
                for s in [t.width, t.height].into_iter().flatten() {
                    prop_assert!((MIN_SIZE..=MAX_SIZE).contains(&s));
                }
                if let Some(q) = t.quality {
                    prop_assert!((20..=100).contains(&q));
                }
                // What was accepted survives the signed URL's token form.
                prop_assert_eq!(Transform::from_token(&t.to_token()), Ok(t));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn transforms_round_trip_through_query_and_token(t in arb_transform()) {
        prop_assert_eq!(Transform::from_token(&t.to_token()), Ok(t));
        let query = t.to_token().replace(':', "=").replace(',', "&");
        prop_assert_eq!(q(&query), Ok(t));
    }

    #[test]
    fn any_token_string_never_panics(s in "\\PC{0,40}") {
        let _ = Transform::from_token(&s);
    }
}
