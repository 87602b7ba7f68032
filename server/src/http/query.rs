//! Query strings and `application/x-www-form-urlencoded` bodies into decoded pairs, the one place
//! every front door reads them. The decoding is `form_urlencoded`'s (the WHATWG rules that
//! `URLSearchParams` writes): `&` separates pairs and empty ones are skipped, the first `=` splits
//! name from value (no `=` means an empty value), `+` is a space, `%XX` is a byte, and bytes that
//! are not UTF-8 become U+FFFD. Order and repeated names are kept; what a repeated name means is the
//! caller's choice. PostgREST's grammar inside the values (`eq.1`, `or=(…)`) stays in `rest::request`.
//! Rejects nothing: every string decodes to some list of pairs.

use std::collections::HashMap;

/// Every pair, in order, repeats included.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Every pair of a URL's query where `+` is itself, not a space (RFC 3986, as in a configured
/// `smtp://…?from=a+b@x` address), `%2B` being a plus either way.
pub fn url_pairs(query: &str) -> Vec<(String, String)> {
    pairs(&query.replace('+', "%2B"))
}

/// The first value given for `name`.
pub fn first(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Names to values, the first value winning when a name repeats (as Go's `url.Values.Get` reads).
pub fn first_values(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in pairs(query.unwrap_or("")) {
        out.entry(k).or_insert(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn decoding_table() {
        let cases: &[(&str, Vec<(String, String)>)] = &[
            ("", vec![]),
            ("&&", vec![]),
            ("a=1&b=2", vec![p("a", "1"), p("b", "2")]),
            ("name=a+b", vec![p("name", "a b")]),
            ("name=a%2Bb", vec![p("name", "a+b")]),
            ("name=a%20b", vec![p("name", "a b")]),
            ("a+b=c", vec![p("a b", "c")]),
            ("a=1&a=2", vec![p("a", "1"), p("a", "2")]),
            ("a=&b", vec![p("a", ""), p("b", "")]),
            ("a==b", vec![p("a", "=b")]),
            ("or=(a.eq.1,b.eq.2)", vec![p("or", "(a.eq.1,b.eq.2)")]),
            ("bad=%FF", vec![p("bad", "\u{FFFD}")]),
            ("half=%4", vec![p("half", "%4")]),
            ("é=%C3%A9", vec![p("é", "é")]),
        ];
        for (q, want) in cases {
            assert_eq!(&pairs(q), want, "{q:?}");
        }
    }

    #[test]
    fn url_pairs_keep_plus() {
        assert_eq!(
            url_pairs("from=a+b@x.io&ca=%2Ftmp%2Fca.pem"),
            vec![p("from", "a+b@x.io"), p("ca", "/tmp/ca.pem")]
        );
    }

    #[test]
    fn first_and_first_values() {
        assert_eq!(first(Some("a=1&b=x+y&b=2"), "b").as_deref(), Some("x y"));
        assert_eq!(first(Some("a=1"), "b"), None);
        assert_eq!(first(None, "b"), None);
        let m = first_values(Some("a=1&a=2&b"));
        assert_eq!((m["a"].as_str(), m["b"].as_str()), ("1", ""));
    }
}
