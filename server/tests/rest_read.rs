//! REST reads against a real PostgreSQL: select, filters, order, paging, counts, embeds, media
//! types — as table-driven scenarios.

mod common;
mod rest_fixture;

use rest_fixture::Rest;
use serde_json::json;

#[tokio::test]
async fn smoke() {
    let r = Rest::new().await;
    let res = r.get("/films?select=id,title&id=eq.1").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json(), json!([{"id": 1, "title": "2001"}]));
}
