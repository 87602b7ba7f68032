//! Column values from their PostgreSQL text form to JSON, by type oid, the way Supabase
//! Realtime types them: booleans, integers, floats and safe numerics become JSON numbers or
//! booleans, json/jsonb are parsed, arrays of those become JSON arrays, everything else stays
//! a string. A value that does not parse as its type is kept as the original string rather
//! than rejected (the text came from PostgreSQL's own output function).

use serde_json::{Number, Value};

const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const NUMERIC: u32 = 1700;
const JSONB: u32 = 3802;

/// Built-in types by oid, with their `pg_type.typname`.
const BUILTIN: &[(u32, &str)] = &[
    (16, "bool"),
    (17, "bytea"),
    (18, "char"),
    (19, "name"),
    (20, "int8"),
    (21, "int2"),
    (22, "int2vector"),
    (23, "int4"),
    (24, "regproc"),
    (25, "text"),
    (26, "oid"),
    (27, "tid"),
    (28, "xid"),
    (29, "cid"),
    (30, "oidvector"),
    (114, "json"),
    (142, "xml"),
    (600, "point"),
    (601, "lseg"),
    (602, "path"),
    (603, "box"),
    (604, "polygon"),
    (628, "line"),
    (650, "cidr"),
    (700, "float4"),
    (701, "float8"),
    (718, "circle"),
    (774, "macaddr8"),
    (790, "money"),
    (829, "macaddr"),
    (869, "inet"),
    (1033, "aclitem"),
    (1042, "bpchar"),
    (1043, "varchar"),
    (1082, "date"),
    (1083, "time"),
    (1114, "timestamp"),
    (1184, "timestamptz"),
    (1186, "interval"),
    (1266, "timetz"),
    (1560, "bit"),
    (1562, "varbit"),
    (1700, "numeric"),
    (1790, "refcursor"),
    (2205, "regclass"),
    (2206, "regtype"),
    (2950, "uuid"),
    (3220, "pg_lsn"),
    (3614, "tsvector"),
    (3615, "tsquery"),
    (3802, "jsonb"),
    (3904, "int4range"),
    (3906, "numrange"),
    (3908, "tsrange"),
    (3910, "tstzrange"),
    (3912, "daterange"),
    (3926, "int8range"),
    (4072, "jsonpath"),
    (4089, "regnamespace"),
    (4096, "regrole"),
    (5038, "pg_snapshot"),
];

/// Built-in array types: (array oid, element oid). Their name is `_` + the element's name.
const ARRAYS: &[(u32, u32)] = &[
    (1000, 16),
    (1001, 17),
    (1002, 18),
    (1003, 19),
    (1005, 21),
    (1007, 23),
    (1009, 25),
    (1014, 1042),
    (1015, 1043),
    (1016, 20),
    (1021, 700),
    (1022, 701),
    (1028, 26),
    (1040, 829),
    (1041, 869),
    (651, 650),
    (143, 142),
    (199, 114),
    (791, 790),
    (1115, 1114),
    (1182, 1082),
    (1183, 1083),
    (1185, 1184),
    (1187, 1186),
    (1231, 1700),
    (1270, 1266),
    (1561, 1560),
    (1563, 1562),
    (2951, 2950),
    (3807, 3802),
    (3643, 3614),
    (3905, 3904),
    (3907, 3906),
    (3909, 3908),
    (3911, 3910),
    (3913, 3912),
    (3927, 3926),
];

fn builtin_name(oid: u32) -> Option<&'static str> {
    BUILTIN.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n)
}

fn array_element(oid: u32) -> Option<u32> {
    ARRAYS.iter().find(|(a, _)| *a == oid).map(|(_, e)| *e)
}

/// `pg_type.typname` of a built-in type (arrays as `_elem`), or `None` for types pgoutput
/// describes with a `Type` message.
pub fn type_name(oid: u32) -> Option<String> {
    if let Some(name) = builtin_name(oid) {
        return Some(name.to_string());
    }
    let element = builtin_name(array_element(oid)?)?;
    Some(format!("_{element}"))
}

/// A column value from its text form, typed by the column's type oid.
///
/// ```
/// use doska::realtime::decode::typed_value;
/// use serde_json::json;
/// assert_eq!(typed_value(23, "42"), json!(42));
/// assert_eq!(typed_value(16, "t"), json!(true));
/// assert_eq!(typed_value(3802, r#"{"a": [1]}"#), json!({"a": [1]}));
/// assert_eq!(typed_value(1007, "{1,NULL,3}"), json!([1, null, 3]));
/// assert_eq!(typed_value(1700, "12345678901234567890.5"), json!("12345678901234567890.5"));
/// assert_eq!(typed_value(1184, "2024-01-02 03:04:05+00"), json!("2024-01-02 03:04:05+00"));
/// ```
pub fn typed_value(type_oid: u32, text: &str) -> Value {
    if let Some(element) = array_element(type_oid) {
        return parse_array(text, element).unwrap_or_else(|| Value::String(text.to_string()));
    }
    scalar(type_oid, text)
}

fn scalar(type_oid: u32, text: &str) -> Value {
    let typed = match type_oid {
        BOOL => match text {
            "t" => Some(Value::Bool(true)),
            "f" => Some(Value::Bool(false)),
            _ => None,
        },
        INT2 | INT4 | INT8 => text.parse::<i64>().ok().map(Value::from),
        OID => text.parse::<u32>().ok().map(Value::from),
        FLOAT4 | FLOAT8 => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
        NUMERIC => safe_numeric(text),
        JSON | JSONB => serde_json::from_str(text).ok(),
        _ => None,
    };
    typed.unwrap_or_else(|| Value::String(text.to_string()))
}

/// Largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A numeric as a JSON number only when a JavaScript number keeps its value: integers within
/// ±(2^53−1), other values with at most 15 significant digits. Otherwise (and for NaN and
/// infinities) the exact text.
fn safe_numeric(text: &str) -> Option<Value> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if frac_part.bytes().all(|b| b == b'0')
        && let Ok(n) = text.split('.').next().unwrap_or(text).parse::<i64>()
        && (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&n)
    {
        return Some(Value::from(n));
    }
    let all: String = format!("{int_part}{frac_part}");
    let significant = all.trim_start_matches('0').trim_end_matches('0').len();
    if significant > 15 {
        return None;
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

/// Parses an array literal such as `{1,2}`, `{{"a b",NULL},{c,d}}` or `[0:1]={x,y}`,
/// typing each element by `element`. `None` when the text is not a well-formed literal.
fn parse_array(text: &str, element: u32) -> Option<Value> {
    let body = match text.strip_prefix('[') {
        // Explicit bounds: "[lo:hi]...={...}".
        Some(_) => &text[text.find('=')? + 1..],
        None => text,
    };
    let mut p = ArrayParser {
        s: body.as_bytes(),
        pos: 0,
        element,
    };
    let value = p.array(0)?;
    (p.pos == p.s.len()).then_some(value)
}

/// PostgreSQL allows at most 6 array dimensions.
const MAX_DIMS: usize = 6;

struct ArrayParser<'a> {
    s: &'a [u8],
    pos: usize,
    element: u32,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        if depth >= MAX_DIMS || self.peek()? != b'{' {
            return None;
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Value::Array(items));
        }
        loop {
            let item = match self.peek()? {
                b'{' => self.array(depth + 1)?,
                b'"' => {
                    let s = self.quoted()?;
                    scalar(self.element, &s)
                }
                _ => {
                    let raw = self.unquoted()?;
                    if raw.eq_ignore_ascii_case("NULL") {
                        Value::Null
                    } else {
                        scalar(self.element, &raw)
                    }
                }
            };
            items.push(item);
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    fn quoted(&mut self) -> Option<String> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    out.push(*self.s.get(self.pos + 1)?);
                    self.pos += 2;
                }
                b => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn unquoted(&mut self) -> Option<String> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b',' | b'}' | b'{' | b'"') {
                break;
            }
            self.pos += 1;
        }
        let raw = std::str::from_utf8(&self.s[start..self.pos]).ok()?.trim();
        (!raw.is_empty()).then(|| raw.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_by_type() {
        let cases: &[(u32, &str, Value)] = &[
            (BOOL, "t", json!(true)),
            (BOOL, "f", json!(false)),
            (INT2, "-7", json!(-7)),
            (INT4, "2147483647", json!(2147483647)),
            (INT8, "9223372036854775807", json!(9223372036854775807i64)),
            (FLOAT8, "1.5", json!(1.5)),
            (FLOAT4, "-0.25", json!(-0.25)),
            (FLOAT8, "NaN", json!("NaN")),
            (FLOAT8, "Infinity", json!("Infinity")),
            (NUMERIC, "10", json!(10)),
            (NUMERIC, "10.00", json!(10)),
            (NUMERIC, "-3.25", json!(-3.25)),
            (NUMERIC, "0.000001", json!(0.000001)),
            (NUMERIC, "9007199254740991", json!(9007199254740991i64)),
            (NUMERIC, "9007199254740993", json!("9007199254740993")),
            (NUMERIC, "1.23456789012345678", json!("1.23456789012345678")),
            (NUMERIC, "NaN", json!("NaN")),
            (JSON, r#"{"a":1}"#, json!({"a": 1})),
            (JSONB, "[1, \"x\"]", json!([1, "x"])),
            (JSONB, "not json", json!("not json")),
            (25, "hello", json!("hello")),
            (
                2950,
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            ),
            (
                1184,
                "2024-05-01 10:00:00+00",
                json!("2024-05-01 10:00:00+00"),
            ),
            (99999, "custom", json!("custom")),
        ];
        for (oid, text, want) in cases {
            assert_eq!(&typed_value(*oid, text), want, "oid {oid} text {text:?}");
        }
    }

    #[test]
    fn arrays_by_element_type() {
        let cases: &[(u32, &str, Value)] = &[
            (1007, "{}", json!([])),
            (1007, "{1,2,3}", json!([1, 2, 3])),
            (1007, "{{1,2},{3,NULL}}", json!([[1, 2], [3, null]])),
            (1007, "[0:1]={5,6}", json!([5, 6])),
            (1000, "{t,f}", json!([true, false])),
            (
                1009,
                r#"{a,"b c","d\"e",NULL,"NULL"}"#,
                json!(["a", "b c", "d\"e", null, "NULL"]),
            ),
            (3807, r#"{"{\"a\": 1}","[2]"}"#, json!([{"a": 1}, [2]])),
            (1231, "{1.5,NaN}", json!([1.5, "NaN"])),
            (
                2951,
                "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
                json!(["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
            ),
            // Malformed literals stay strings.
            (1007, "{1,2", json!("{1,2")),
            (1007, "{1}x", json!("{1}x")),
            (1007, "{{{{{{{1}}}}}}}", json!("{{{{{{{1}}}}}}}")),
        ];
        for (oid, text, want) in cases {
            assert_eq!(&typed_value(*oid, text), want, "oid {oid} text {text:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(type_name(23).as_deref(), Some("int4"));
        assert_eq!(type_name(1007).as_deref(), Some("_int4"));
        assert_eq!(type_name(3807).as_deref(), Some("_jsonb"));
        assert_eq!(type_name(16385), None);
    }
}
